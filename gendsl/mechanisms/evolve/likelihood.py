"""Log-density through the probability-flow ODE (Chen et al. 2018; Song et al. 2021).

Along the ODE ``dx/dt = v(x, t)`` the log-density obeys ``d log p_t(x_t) / dt = -div v``, so

    log p_0(x) = log p_1(x_1) + int_0^1 div v(x_t, t) dt,

integrated from the data end to ``t = 1`` together with ``x_t`` (Tsit5, PID controller). The
divergence is the exact trace of the Jacobian (forward mode, one pass per element: for small
events) or Hutchinson's estimate ``z^T (dv/dx) z`` with a Rademacher probe ``z`` held fixed along
each path (one Jacobian-vector product), whose expectation is the exact value.
"""

from __future__ import annotations

from typing import Callable

import diffrax
import jax
import jax.numpy as jnp

from gendsl.mechanisms.evolve.processes import AbstractProcess, velocity

__all__ = ["TRACES", "log_prob"]

TRACES = ("exact", "hutchinson")
#: tolerances of the likelihood solve (tighter than sampling: log-densities are compared in millinats)
RTOL = 1e-5
ATOL = 1e-5
MAX_STEPS = 8192


def _divergence_one(model, process, t, x, c, probe):
    """Velocity and its divergence for one example ``x`` (``probe`` None: exact trace)."""

    def v(flat):
        x0_hat, eps_hat = model(t, flat.reshape(x.shape), c)
        return velocity(process, t, x0_hat, eps_hat).reshape(-1)

    flat = x.reshape(-1)
    if probe is None:
        jac, val = jax.jacfwd(lambda f: (v(f), v(f)), has_aux=True)(flat)
        div = jnp.trace(jac)
    else:
        val, jz = jax.jvp(v, (flat,), (probe,))
        div = jnp.dot(probe, jz)
    return val.reshape(x.shape), div


def _augmented_field(t, state, args):
    model, process, context, probes = args
    y, _ = state
    return jax.vmap(lambda x, c, z: _divergence_one(model, process, t, x, c, z))(y, context, probes)


def log_prob(model: Callable, process: AbstractProcess, y0: jax.Array, context=None, *, trace: str = "exact",
             key: jax.Array | None = None, rtol: float = RTOL, atol: float = ATOL,
             t_start: float | None = None) -> jax.Array:
    """Probability-flow log-density of each row of ``y0`` (shape ``(n, *shape)``): ``(n,)``.

    Parameters
    ----------
    model:
        Per-example ``(t, x, c) -> (x0_hat, eps_hat)``.
    context:
        ``(n, C)`` conditioning rows, or None.
    trace:
        ``"exact"`` or ``"hutchinson"`` (needs ``key`` for the Rademacher probes).
    t_start:
        The data end of the path (default ``process.t_min_likelihood``).
    """
    if trace not in TRACES:
        raise ValueError(f"unknown trace {trace!r}; expected one of {TRACES}")
    t_start = process.t_min_likelihood if t_start is None else t_start
    n = y0.shape[0]
    probes = None
    if trace == "hutchinson":
        if key is None:
            raise ValueError("the hutchinson trace needs a key")
        probes = jax.random.rademacher(key, (n, y0[0].size), jnp.float32)
    sol = diffrax.diffeqsolve(diffrax.ODETerm(_augmented_field), diffrax.Tsit5(), t0=t_start, t1=1.0,
                              dt0=(1.0 - t_start) / 16, y0=(y0, jnp.zeros(n)), args=(model, process, context, probes),
                              stepsize_controller=diffrax.PIDController(rtol=rtol, atol=atol),
                              max_steps=MAX_STEPS, saveat=diffrax.SaveAt(t1=True))
    y1, delta = sol.ys[0][-1], sol.ys[1][-1]
    prior = jax.vmap(lambda y: process.prior_log_prob(y.reshape(-1)))(y1)
    return prior + delta
