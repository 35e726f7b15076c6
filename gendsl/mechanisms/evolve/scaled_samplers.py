"""Few-step samplers in the scaled coordinates of Karras et al. (2022): EDM's Heun sampler (with
its stochastic "churn") and the multistep DPM-Solver++(2M) of Lu et al. (2022).

Both run on ``y = x / alpha`` with the noise level ``s = sigma / alpha`` as time, where the
probability-flow ODE of every Gaussian process is ``dy/ds = (y - D(y; s)) / s`` with ``D`` the
model's ``x0_hat`` (its trajectories are nearly straight, which is why few steps suffice). Both
run between the process's ``s(1)`` and ``s(t_min)``, so they need ``alpha(1) > 0``: every
process but ``flow_matching``.

- :func:`solve_edm`: ``steps`` noise levels ``s_0 > ... > s_{N-1}`` on EDM's ``rho = 7``
  schedule (:func:`noise_levels`) and ``s_N = 0``; Heun's
  method between consecutive levels through diffrax, and a last Euler step to 0, i.e. ``D`` at
  ``s_{N-1}``: ``2 N - 1`` model evaluations (EDM's 35 at ``N = 18``). With ``churn > 0`` each step
  first raises the level to ``s_hat = (1 + gamma) s_i`` by adding fresh noise (Algorithm 2; diffrax
  has no such method, so it is a ``lax.scan`` of the same Heun steps).
- :func:`solve_dpm`: DPM-Solver++(2M), data prediction in ``lambda = -log s`` on steps uniform in
  ``lambda`` (its authors' choice for pixel data; on the test mixtures it is 1.5-2.5x more
  accurate than the ``rho = 7`` schedule at 10-20 steps): first order on the first step (and the
  last, below 15 steps), second order from the last two predictions otherwise: one model
  evaluation per step (not a method diffrax has: a ``lax.scan``).
"""

from __future__ import annotations

import math
from typing import Callable

import diffrax
import jax
import jax.numpy as jnp
import numpy as np

from gendsl.core.signatures import STEP_LIMIT, Param, Signature
from gendsl.mechanisms.evolve.processes import EDM_RHO, AbstractProcess

__all__ = ["EDM_HEUN_SIGNATURE", "DPM_SOLVER_SIGNATURE", "noise_levels", "log_uniform_levels", "solve_edm",
           "solve_dpm",
           "edm_evaluations", "dpm_evaluations"]

#: ``edm_heun(...)`` in the language
EDM_HEUN_SIGNATURE = Signature("edm_heun", "sampler", (
        Param("steps", "int", 18, limit=STEP_LIMIT, doc="noise levels N: 2N - 1 network evaluations"),
        Param("churn", "number", 0.0, doc="EDM's S_churn: stochasticity added per step (0: deterministic)"),
        Param("s_tmin", "number", 0.05, doc="the churn applies at noise levels in [s_tmin, s_tmax]"),
        Param("s_tmax", "number", 50.0),
        Param("s_noise", "number", 1.003, doc="scale of the churn's fresh noise"),
    ), "Karras et al. (2022) deterministic 2nd-order Heun sampler (stochastic with churn > 0)")
#: ``dpm_solver(...)`` in the language
DPM_SOLVER_SIGNATURE = Signature("dpm_solver", "sampler", (
        Param("steps", "int", 20, limit=STEP_LIMIT, doc="steps, one network evaluation each"),
    ), "multistep DPM-Solver++(2M) for few network evaluations")
#: below this many steps the last DPM-Solver++ step is first order (more stable with few steps)
_LOWER_ORDER_FINAL = 15


def _scale(process: AbstractProcess, t) -> jax.Array:
    return jnp.exp(process.log_snr(jnp.float32(t)))


def _ends(process: AbstractProcess) -> tuple[float, float]:
    with jax.ensure_compile_time_eval():
        hi, lo = float(_scale(process, 1.0)), float(_scale(process, process.t_min))
    if not math.isfinite(hi) or lo <= 0:
        raise ValueError(f"the {process.name} process has no finite noise level sigma/alpha at both ends")
    return hi, lo


def noise_levels(process: AbstractProcess, steps: int) -> np.ndarray:
    """EDM's ``steps`` decreasing noise levels ``s = sigma / alpha`` from ``s(1)`` to ``s(t_min)``:
    uniform in ``s ** (1 / rho)``, shape ``(steps,)`` (float64)."""
    hi, lo = _ends(process)
    u = np.linspace(0.0, 1.0, steps) if steps > 1 else np.zeros(1)
    return (hi ** (1 / EDM_RHO) + u * (lo ** (1 / EDM_RHO) - hi ** (1 / EDM_RHO))) ** EDM_RHO


def log_uniform_levels(process: AbstractProcess, steps: int) -> np.ndarray:
    """``steps`` decreasing noise levels from ``s(1)`` to ``s(t_min)``, uniform in ``log s``."""
    hi, lo = _ends(process)
    return np.exp(np.linspace(math.log(hi), math.log(lo), steps))


def _denoiser(model: Callable, process: AbstractProcess, context) -> Callable:
    """``D(y, s)``: the batched ``x0_hat`` at the scaled point ``y`` ``(n, *shape)`` and level ``s``."""
    def denoise(y, s):
        t = process.t_of_log_snr(jnp.log(s))
        alpha = process.alpha_sigma(t)[0]
        x0_hat, _ = jax.vmap(model, (None, 0, 0))(t, alpha * y, context)
        return x0_hat

    return denoise


def _field(s, y, args):
    denoise = args
    return (y - denoise(y, s)) / s


def edm_evaluations(steps: int) -> int:
    """Model evaluations of :func:`solve_edm` with ``steps`` noise levels: ``2 steps - 1``."""
    return 2 * int(steps) - 1


def dpm_evaluations(steps: int) -> int:
    """Model evaluations of :func:`solve_dpm`: one per step."""
    return int(steps)


def solve_edm(model: Callable, process: AbstractProcess, y1: jax.Array, key: jax.Array, context=None, *,
              steps: int = 18, churn: float = 0.0, s_tmin: float = 0.05, s_tmax: float = 50.0,
              s_noise: float = 1.003) -> tuple[jax.Array, jax.Array]:
    """EDM's sampler from prior draws ``y1`` ``(n, *shape)`` at ``t = 1`` to the data.

    Returns ``(x0, evaluations)``: ``(n, *shape)`` samples and the model evaluations per sample.
    """
    levels = noise_levels(process, int(steps))
    denoise = _denoiser(model, process, context)
    y = y1 / process.alpha_sigma(jnp.float32(1.0))[0]
    if churn == 0.0 and len(levels) > 1:
        sol = diffrax.diffeqsolve(diffrax.ODETerm(_field), diffrax.Heun(), t0=float(levels[0]), t1=float(levels[-1]),
                                  dt0=None, y0=y, args=denoise,
                                  stepsize_controller=diffrax.StepTo(ts=jnp.asarray(levels, jnp.float32)),
                                  saveat=diffrax.SaveAt(t1=True))
        y = sol.ys[-1]
    elif len(levels) > 1:
        gamma = min(churn / len(levels), math.sqrt(2.0) - 1.0)

        def step(y, xs):
            s, s_next, k = xs
            g = jnp.where((s >= s_tmin) & (s <= s_tmax), gamma, 0.0)
            s_hat = s * (1.0 + g)
            fresh = jnp.sqrt(jnp.maximum(s_hat**2 - s**2, 0.0))  # rounding may leave -0 when gamma = 0
            y = y + fresh * s_noise * jax.random.normal(k, y.shape)
            d = _field(s_hat, y, denoise)
            y_euler = y + (s_next - s_hat) * d
            return y + (s_next - s_hat) * 0.5 * (d + _field(s_next, y_euler, denoise)), None

        lv = jnp.asarray(levels, jnp.float32)
        y, _ = jax.lax.scan(step, y, (lv[:-1], lv[1:], jax.random.split(key, len(levels) - 1)))
    x0 = denoise(y, jnp.float32(levels[-1]))  # Euler from the last level to 0
    return x0, jnp.asarray(edm_evaluations(steps))


def solve_dpm(model: Callable, process: AbstractProcess, y1: jax.Array, context=None, *,
              steps: int = 20) -> tuple[jax.Array, jax.Array]:
    """DPM-Solver++(2M) from prior draws ``y1`` ``(n, *shape)`` at ``t = 1`` to ``t_min``.

    Returns ``(x, evaluations)``: ``(n, *shape)`` samples (at ``t_min``) and one evaluation per step.
    """
    levels = log_uniform_levels(process, int(steps) + 1)
    denoise = _denoiser(model, process, context)
    y = y1 / process.alpha_sigma(jnp.float32(1.0))[0]
    lam = -np.log(levels)
    h = np.diff(lam)  # > 0
    ratio = np.concatenate([[1.0], h[:-1] / h[1:]])  # r_i = h_{i-1} / h_i
    first_order = np.zeros(len(h), bool)
    first_order[0] = True
    if len(h) < _LOWER_ORDER_FINAL:
        first_order[-1] = True

    def step(carry, xs):
        y, previous = carry
        s, s_next, r, first = xs
        d = denoise(y, s)
        corrected = (1.0 + 0.5 / r) * d - (0.5 / r) * previous
        d_used = jnp.where(first, d, corrected)
        y = (s_next / s) * y + (1.0 - s_next / s) * d_used  # exp(-h) = s_next / s
        return (y, d), None

    lv = jnp.asarray(levels, jnp.float32)
    xs = (lv[:-1], lv[1:], jnp.asarray(ratio, jnp.float32), jnp.asarray(first_order))
    (y, _), _ = jax.lax.scan(step, (y, jnp.zeros_like(y)), xs)
    alpha_end = process.alpha_sigma(jnp.float32(process.t_min))[0]
    return alpha_end * y, jnp.asarray(dpm_evaluations(steps))
