"""Log-density through the probability-flow ODE (Chen et al. 2018; Song et al. 2021).

Along the ODE ``dx/dt = v(x, t)`` the log-density obeys ``d log p_t(x_t) / dt = -div v``, so

    log p_0(x) = log p_1(x_1) + int_0^1 div v(x_t, t) dt,

integrated from the data end to ``t = 1`` together with ``x_t`` (Tsit5, PID controller) by
:func:`gendsl.numerics.ode.log_prob_through_ode`, with the exact trace of the Jacobian or
Hutchinson's estimate (a Rademacher probe held fixed along each path). This module supplies the
field: the process's velocity of the model's ``(x0_hat, eps_hat)``.
"""

from __future__ import annotations

from typing import Callable

import equinox as eqx
import jax

from gendsl.mechanisms.evolve.processes import AbstractProcess, velocity
from gendsl.numerics.ode import TRACES, log_prob_through_ode, rademacher_probes

__all__ = ["TRACES", "log_prob"]

#: tolerances of the likelihood solve (tighter than sampling: log-densities are compared in millinats)
RTOL = 1e-5
ATOL = 1e-5
MAX_STEPS = 8192


class _FlatVelocity(eqx.Module):
    """The probability-flow field of one example on its flattened value: ``(t, x (D,), c) -> (D,)``."""

    model: Callable
    process: AbstractProcess
    shape: tuple[int, ...] = eqx.field(static=True)

    def __call__(self, t, flat, c):
        x0_hat, eps_hat = self.model(t, flat.reshape(self.shape), c)
        return velocity(self.process, t, x0_hat, eps_hat).reshape(-1)


def log_prob(model: Callable, process: AbstractProcess, y0: jax.Array, context=None, *, trace: str = "exact",
             key: jax.Array | None = None, rtol: float = RTOL, atol: float = ATOL,
             t_start: float | None = None, label: str = "the likelihood ODE") -> jax.Array:
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
    label:
        What the solve is called when it does not finish (a user error).
    """
    if trace not in TRACES:
        raise ValueError(f"unknown trace {trace!r}; expected one of {TRACES}")
    t_start = process.t_min_likelihood if t_start is None else t_start
    n, shape = y0.shape[0], y0.shape[1:]
    probes = None
    if trace == "hutchinson":
        if key is None:
            raise ValueError("the hutchinson trace needs a key")
        probes = rademacher_probes(key, n, y0[0].size)
    prior = jax.vmap(process.prior_log_prob)
    return log_prob_through_ode(_FlatVelocity(model, process, shape), y0.reshape(n, -1), t_start, 1.0, prior,
                                context, probes, rtol=rtol, atol=atol, max_steps=MAX_STEPS,
                                dt0=(1.0 - t_start) / 16, label=label,
                                advice=f"the model's probability-flow field is too stiff to integrate at "
                                       f"rtol={rtol:g}, atol={atol:g} in {MAX_STEPS} steps")
