"""Samplers of an evolve node, all through diffrax: from the prior at ``t = 1`` to the data end.

- :func:`solve_ode`: the probability-flow / velocity ODE ``dx/dt = alpha' x0_hat + sigma' eps_hat``,
  with a fixed-step solver (Euler, Heun, midpoint or Tsit5 on the process's time grid) or with
  ``steps="adaptive"``: Tsit5 and a PID step-size controller.
- :func:`solve_sde`: the reverse-time SDE ``dx = [v - g^2 score / 2] dt + g dW``, run in
  ``s = 1 - t`` by Euler-Maruyama, optionally followed at each step by Langevin corrector steps
  (:class:`LangevinCorrected`, the predictor-corrector sampler of Song et al. 2021), and a last
  denoising step (``x0_hat``).
- :func:`ode_path`: the ODE solution saved at given times (distillation targets).
- EDM's Heun sampler and DPM-Solver++(2M), in the scaled coordinates ``x / alpha``: in
  :mod:`~gendsl.mechanisms.evolve.scaled_samplers`, registered here.

``model`` is a per-example ``(t, x, c) -> (x0_hat, eps_hat)`` (an equinox module or any
callable PyTree); it is passed to diffrax through ``args``. Each function also returns the number
of model evaluations per sample, from diffrax's step statistics.
"""

from __future__ import annotations

from typing import Callable, ClassVar

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import lineax as lx
import numpy as np

from gendsl.core.catalog import Table
from gendsl.core.signatures import STEP_LIMIT, Param, Signature
from gendsl.mechanisms.evolve.processes import AbstractProcess, reverse_drift, score, velocity
from gendsl.mechanisms.evolve.scaled_samplers import (
    DPM_SOLVER_SIGNATURE,
    EDM_HEUN_SIGNATURE,
    dpm_evaluations,
    edm_evaluations,
)
from gendsl.numerics.ode import finished

__all__ = ["SAMPLERS", "SCALED_SAMPLERS", "SOLVERS", "solve_ode", "ode_path", "solve_sde", "LangevinCorrected", "ode_evaluations",
           "sampler_evaluations"]

#: ``ode(...)`` in the language
ODE_SIGNATURE = Signature("ode", "sampler", (
        Param("steps", "int_or_str", 64, limit=STEP_LIMIT), Param("solver", "str", "heun", ("euler", "heun", "midpoint", "tsit5")),
        Param("rtol", "number", 1e-3), Param("atol", "number", 1e-5),
    ), "probability-flow / velocity ODE")
#: ``sde(...)`` in the language
SDE_SIGNATURE = Signature("sde", "sampler", (
        Param("steps", "int", 256, limit=STEP_LIMIT), Param("corrector", "int", 0, limit=100), Param("snr", "number", 0.16),
    ), "reverse-time SDE (Euler-Maruyama)")

#: samplers of an evolve node, by name (each entry its signature); the scaled-coordinate ones
#: (:mod:`~gendsl.mechanisms.evolve.scaled_samplers`) need a process with ``alpha(1) > 0``
SAMPLERS = Table("sampler", {"ode": ODE_SIGNATURE, "sde": SDE_SIGNATURE, "edm_heun": EDM_HEUN_SIGNATURE,
                             "dpm_solver": DPM_SOLVER_SIGNATURE})
#: the samplers that run in ``x / alpha`` with ``sigma / alpha`` as time
SCALED_SAMPLERS = ("edm_heun", "dpm_solver")
#: fixed-step solvers: name -> (diffrax solver, evaluations per step, evaluations at the start)
SOLVERS = {
    "euler": (diffrax.Euler, 1, 0),
    "heun": (diffrax.Heun, 2, 0),
    "midpoint": (diffrax.Midpoint, 2, 0),
    "tsit5": (diffrax.Tsit5, 6, 1),
}
#: most steps an adaptive solve may take
MAX_STEPS = 4096
#: first step of an adaptive solve, as a fraction of the time span
_FIRST_STEP = 1.0 / 16


def _predict(model, t, y, context):
    return jax.vmap(model, (None, 0, 0))(t, y, context)


def _ode_field(t, y, args):
    model, process, context = args
    x0_hat, eps_hat = _predict(model, t, y, context)
    return velocity(process, t, x0_hat, eps_hat)


def ode_evaluations(solver: str, num_steps) -> jax.Array:
    """Model evaluations of ``num_steps`` steps of ``solver`` (Tsit5 is first-same-as-last)."""
    _, per_step, first = SOLVERS[solver]
    return first + per_step * jnp.asarray(num_steps)


def sampler_evaluations(sampler) -> int | None:
    """Model evaluations per sample of a resolved sampler spec, as its solver counts them; None
    for an adaptive solve (measured)."""
    if sampler.name == "edm_heun":
        return edm_evaluations(sampler["steps"])
    if sampler.name == "dpm_solver":
        return dpm_evaluations(sampler["steps"])
    if sampler.name == "ode":
        if sampler["steps"] == "adaptive":
            return None
        _, per_step, first = SOLVERS[sampler["solver"]]
        return first + per_step * int(sampler["steps"])
    return int(sampler["steps"]) * (1 + int(sampler["corrector"])) + 1


def solve_ode(model: Callable, process: AbstractProcess, y1: jax.Array, context=None, *, steps: int | str = 64,
              solver: str = "heun", rtol: float = 1e-3, atol: float = 1e-5,
              t_end: float | None = None, label: str = "the ODE sampler") -> tuple[jax.Array, jax.Array]:
    """Integrate the probability-flow ODE from ``t = 1`` (``y1``, shape ``(n, *shape)``) to ``t_end``.

    Parameters
    ----------
    steps:
        Number of steps on ``process.time_grid``, or ``"adaptive"`` (Tsit5 with a PID controller
        at ``rtol`` / ``atol``).
    solver:
        ``euler``, ``heun``, ``midpoint`` or ``tsit5`` (fixed steps only).
    label:
        What the solve is called in the user error raised when an adaptive solve does not finish
        in ``MAX_STEPS`` steps.

    Returns
    -------
    (y0, evaluations):
        ``(n, *shape)`` points at ``t_end`` and the model evaluations per sample (scalar int).
    """
    t_end = process.t_min if t_end is None else t_end
    term = diffrax.ODETerm(_ode_field)
    if steps == "adaptive":
        solver, controller, dt0 = "tsit5", diffrax.PIDController(rtol=rtol, atol=atol), -(1.0 - t_end) * _FIRST_STEP
    else:
        controller, dt0 = diffrax.StepTo(ts=jnp.asarray(process.time_grid(int(steps), t_end), jnp.float32)), None
    sol = diffrax.diffeqsolve(term, SOLVERS[solver][0](), t0=1.0, t1=t_end, dt0=dt0, y0=y1,
                              args=(model, process, context), stepsize_controller=controller,
                              max_steps=MAX_STEPS if steps == "adaptive" else None,
                              saveat=diffrax.SaveAt(t1=True), throw=False)
    y0 = finished(sol, sol.ys[-1], label, f"it has at most {MAX_STEPS} steps: loosen rtol/atol (now {rtol:g}/{atol:g}) "
                                          f"or sample with fixed steps (ode(steps=64), or --steps 64)")
    return y0, ode_evaluations(solver, sol.stats["num_steps"])


def ode_path(model: Callable, process: AbstractProcess, y1: jax.Array, context, ts, *, steps_between: int = 8,
             solver: str = "heun") -> jax.Array:
    """The ODE solution from ``y1`` at the decreasing times ``ts`` (``ts[0] = 1``): ``(len(ts), n, *shape)``.

    Each interval ``[ts[i+1], ts[i]]`` is covered by ``steps_between`` steps of the process's
    own time grid (restricted to that interval), so the path is as accurate as a fine solve.
    """
    ts = np.asarray(ts, np.float64)
    fine = process.time_grid(steps_between * (len(ts) - 1))
    fine = fine[np.min(np.abs(fine[:, None] - ts[None, :]), axis=1) > 1e-5]  # ts themselves are kept exactly
    grid = np.sort(np.concatenate([ts, fine]))[::-1]
    term = diffrax.ODETerm(_ode_field)
    sol = diffrax.diffeqsolve(term, SOLVERS[solver][0](), t0=float(ts[0]), t1=float(ts[-1]), dt0=None, y0=y1,
                              args=(model, process, context),
                              stepsize_controller=diffrax.StepTo(ts=jnp.asarray(grid, jnp.float32)),
                              saveat=diffrax.SaveAt(ts=jnp.asarray(ts, jnp.float32)))
    return sol.ys


# -- reverse-time SDE ---------------------------------------------------------------------------


def _sde_drift(s, y, args):
    model, process, context = args
    t = 1.0 - s
    x0_hat, eps_hat = _predict(model, t, y, context)
    return -reverse_drift(process, t, x0_hat, eps_hat)


def _sde_diffusion(s, y, args):
    _, process, _ = args
    return lx.DiagonalLinearOperator(jnp.broadcast_to(jnp.sqrt(process.diffusion2(1.0 - s)), y.shape))


def _sde_score(s, y, args):
    model, process, context = args
    t = 1.0 - s
    _, eps_hat = _predict(model, t, y, context)
    return score(process, t, eps_hat)


def _mean_norm(a: jax.Array) -> jax.Array:
    """Euclidean norm of each example, averaged over the batch."""
    return jnp.mean(jnp.sqrt(jnp.sum(a.reshape(a.shape[0], -1) ** 2, axis=-1)))


class LangevinCorrected(diffrax.AbstractItoSolver):
    """Euler-Maruyama predictor, then ``corrector`` Langevin steps at the new time.

    Each corrector step is ``y <- y + e * score + sqrt(2 e) z`` with the step ``e`` set from the
    signal-to-noise ratio ``snr``: ``e = 2 (snr |z| / |score|)^2``, norms per example averaged
    over the batch (Song et al. 2021, Algorithms 4 and 5). The Brownian control has shape
    ``(1 + corrector, *y.shape)``: the first slice drives the predictor, the others (rescaled to
    unit variance) the corrector. ``score_fn(s, y, args)`` gives the batched score at solver time ``s``.
    """

    score_fn: Callable
    corrector: int = eqx.field(static=True)
    snr: float = eqx.field(static=True)
    term_structure: ClassVar = diffrax.MultiTerm[tuple[diffrax.ODETerm, diffrax.ControlTerm]]
    interpolation_cls: ClassVar = diffrax.LocalLinearInterpolation

    def order(self, terms):
        return 1

    def strong_order(self, terms):
        return 0.5

    def init(self, terms, t0, t1, y0, args):
        return None

    def step(self, terms, t0, t1, y0, args, solver_state, made_jump):
        del solver_state, made_jump
        drift, noise = terms.terms
        ds = drift.contr(t0, t1)
        dw = noise.contr(t0, t1)
        y = y0 + drift.vf_prod(t0, y0, args, ds) + noise.vf(t0, y0, args).mv(dw[0])
        for k in range(self.corrector):
            z = dw[1 + k] / jnp.sqrt(ds)
            grad = self.score_fn(t1, y, args)
            e = 2.0 * (self.snr * _mean_norm(z) / jnp.maximum(_mean_norm(grad), 1e-12)) ** 2
            y = y + e * grad + jnp.sqrt(2.0 * e) * z
        return y, None, dict(y0=y0, y1=y), None, diffrax.RESULTS.successful

    def func(self, terms, t0, y0, args):
        return terms.vf(t0, y0, args)


def solve_sde(model: Callable, process: AbstractProcess, y1: jax.Array, key: jax.Array, context=None, *,
              steps: int = 256, corrector: int = 0, snr: float = 0.16,
              t_end: float = 1e-3) -> tuple[jax.Array, jax.Array]:
    """Sample by the reverse-time SDE from ``t = 1`` to ``t_end``, then denoise (``x0_hat``).

    Parameters
    ----------
    y1:
        ``(n, *shape)`` prior draws.
    steps:
        Euler-Maruyama steps on ``process.time_grid(steps, t_end)``.
    corrector, snr:
        Langevin corrector steps after each predictor step, and their signal-to-noise ratio.

    Returns
    -------
    (y0, evaluations):
        ``(n, *shape)`` samples and the model evaluations per sample.
    """
    t_end = max(t_end, process.t_min)
    grid = 1.0 - process.time_grid(int(steps), t_end)
    path = diffrax.UnsafeBrownianPath(shape=(1 + corrector, *y1.shape) if corrector else y1.shape, key=key)
    terms = diffrax.MultiTerm(diffrax.ODETerm(_sde_drift), diffrax.ControlTerm(_sde_diffusion, path))
    solver = LangevinCorrected(_sde_score, corrector, snr) if corrector else diffrax.Euler()
    args = (model, process, context)
    sol = diffrax.diffeqsolve(terms, solver, t0=0.0, t1=float(grid[-1]), dt0=None, y0=y1, args=args,
                              stepsize_controller=diffrax.StepTo(ts=jnp.asarray(grid, jnp.float32)),
                              saveat=diffrax.SaveAt(t1=True),
                              adjoint=diffrax.ForwardMode())
    x0_hat, _ = _predict(model, jnp.float32(t_end), sol.ys[-1], context)
    return x0_hat, sol.stats["num_steps"] * (1 + corrector) + 1
