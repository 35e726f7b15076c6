"""Log-densities through an ODE, and the Tsit5 solve they run on (diffrax).

Along ``dx/dt = v(x, t)`` the log-density obeys the instantaneous change of variables
``d log p_t(x_t) / dt = -div v(x_t, t)`` (Chen et al. 2018), so for a path from ``t0`` to ``t1``

    log p_{t0}(x_{t0}) = log p_{t1}(x_{t1}) + int_{t0}^{t1} div v(x_t, t) dt.

:func:`integrate_divergence` integrates the state and that integral together;
:func:`log_prob_through_ode` adds the log-density at the far end. The divergence
(:func:`divergence`) is the exact trace of the Jacobian (forward mode, one pass per element: for
small events) or Hutchinson's estimate ``z^T (dv/dx) z`` with a Rademacher probe ``z`` held fixed
along each path (one Jacobian-vector product), whose expectation is the exact value.

The probability-flow ODE of ``evolve`` (data at ``t0``, prior at ``t1 = 1``) and the continuous
normalizing flow ``cnf`` (data at ``t0 = 1``, base at ``t1 = 0``) both run through here.

``field`` is a per-example ``(t, x, c) -> dx/dt`` on flat ``x`` ``(D,)`` with the example's
context row ``c`` (or None); it is a PyTree (an equinox module, a ``jax.tree_util.Partial``) and
is handed to diffrax through ``args``, so its arrays are traced, not baked in.
"""

from __future__ import annotations

from typing import Callable

import diffrax
import jax
import jax.numpy as jnp

from gendsl.numerics.runtime_checks import fail_if

__all__ = ["TRACES", "SOLVERS", "STEP_LIMIT_ADVICE", "finished", "divergence", "rademacher_probes", "solve", "solve_at",
           "integrate_divergence", "log_prob_through_ode"]

#: how the divergence is computed
TRACES = ("exact", "hutchinson")


def divergence(f: Callable, x: jax.Array, probe: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
    """``(f(x), div f(x))`` for ``f: (D,) -> (D,)``.

    ``probe`` None: the exact trace of ``df/dx`` by forward mode (``D`` passes, the value from the
    same trace); a Rademacher ``probe`` ``(D,)``: Hutchinson's ``probe . (df/dx) probe`` (one pass).
    """
    if probe is None:
        jac, val = jax.jacfwd(lambda v: (f(v), f(v)), has_aux=True)(x)
        return val, jnp.trace(jac)
    val, jz = jax.jvp(f, (x,), (probe,))
    return val, jnp.dot(probe, jz)


def rademacher_probes(key: jax.Array, n: int, size: int, dtype=jnp.float32) -> jax.Array:
    """``(n, size)`` Rademacher probes: one per example, held fixed along its path."""
    return jax.random.rademacher(key, (n, size), dtype)


def finished(sol, value, label: str, advice: str):
    """``value`` once the diffrax solution ``sol`` (solved with ``throw=False``) is known to have
    finished; else a user error at the program's boundary (:mod:`~gendsl.numerics.runtime_checks`):
    "LABEL hit its step limit or its step size collapsed: ADVICE"."""
    return fail_if(value, sol.result != diffrax.RESULTS.successful,
                   f"{label} did not finish (it hit its step limit, or its step size collapsed): {advice}")


def solve(field: Callable, y0, t0: float, t1: float, args=None, *, steps="adaptive", rtol: float = 1e-3,
          atol: float = 1e-5, max_steps: int = 4096, dt0: float | None = None, label: str = "an ODE solve",
          advice: str | None = None):
    """Solve ``dy/dt = field(t, y, args)`` from ``t0`` to ``t1`` with Tsit5.

    Parameters
    ----------
    field:
        ``(t, y, args) -> dy/dt`` on PyTrees (the batched field).
    y0:
        Initial state (a PyTree of arrays).
    steps:
        ``"adaptive"`` (PID step-size control with ``rtol`` / ``atol``, first step ``dt0`` or
        diffrax's choice when None) or a number of fixed steps (``dt0`` ignored).
    max_steps:
        Most steps of the solve; reaching it is a user error naming ``label`` (say "the ODE
        solver of 'x'") and saying what to change (``advice``; None: max_steps, rtol and atol).

    Returns
    -------
    ``(y1, num_steps)``: the state at ``t1`` and the number of steps taken (a scalar array). The
    gradient is that of the discretised solve (``RecursiveCheckpointAdjoint``).
    """
    if steps == "adaptive":
        controller = diffrax.PIDController(rtol=rtol, atol=atol)
    else:
        controller, dt0 = diffrax.ConstantStepSize(), (t1 - t0) / int(steps)
    sol = diffrax.diffeqsolve(diffrax.ODETerm(field), diffrax.Tsit5(), t0, t1, dt0, y0, args=args,
                              stepsize_controller=controller, adjoint=diffrax.RecursiveCheckpointAdjoint(),
                              max_steps=max_steps, saveat=diffrax.SaveAt(t1=True), throw=False)
    if advice is None:
        advice = (f"increase max_steps (now {max_steps}) or loosen rtol/atol (now {rtol:g}/{atol:g})"
                  if steps == "adaptive" else f"max_steps (now {max_steps}) must be at least steps ({steps})")
    y1 = finished(sol, jax.tree_util.tree_map(lambda a: a[-1], sol.ys), label, advice)
    return y1, sol.stats["num_steps"]


#: the solvers of ``ode(..., solver=...)`` in expressions
SOLVERS = {"tsit5": diffrax.Tsit5, "kvaerno5": diffrax.Kvaerno5}

#: what to change when a solve in an expression fails (its values are then NaN)
STEP_LIMIT_ADVICE = ('an ode() solve did not finish (step limit reached or the step size collapsed): increase '
                     'max_steps or loosen rtol/atol, or try solver="kvaerno5" for a stiff system')


def solve_at(field: Callable, y0: jax.Array, t0, ts: jax.Array, args=(), *, solver: str = "tsit5",
             rtol: float = 1e-6, atol: float = 1e-6, max_steps: int = 4096) -> jax.Array:
    """Solve ``dy/dt = field(t, y, args)`` from ``y(t0) = y0`` and return ``y`` at the times ``ts``.

    Parameters
    ----------
    y0:
        Initial state, any shape ``S``.
    ts:
        ``(T,)`` increasing output times, the first at or after ``t0``.
    solver:
        A key of :data:`SOLVERS`; the step size is adapted by a PID controller with ``rtol`` / ``atol``.

    Returns
    -------
    ``(T, *S)``; every value is NaN when the solve fails (``max_steps`` reached, say), so a
    log-density through it is NaN and a sampler rejects the point (see :data:`STEP_LIMIT_ADVICE`).
    Differentiable by diffrax's default adjoint (``RecursiveCheckpointAdjoint``).
    """
    ts = jnp.asarray(ts, jnp.result_type(float))
    sol = diffrax.diffeqsolve(diffrax.ODETerm(field), SOLVERS[solver](), jnp.asarray(t0, ts.dtype), ts[-1], None,
                              jnp.asarray(y0, ts.dtype), args=args, saveat=diffrax.SaveAt(ts=ts),
                              stepsize_controller=diffrax.PIDController(rtol=rtol, atol=atol),
                              max_steps=max_steps, throw=False)
    return jnp.where(sol.result == diffrax.RESULTS.successful, sol.ys, jnp.nan)


def _augmented(t, state, args):
    """``d(y, a)/dt = (v, div v)`` for a batch ``y`` ``(n, D)``."""
    field, context, probes = args
    y, _ = state
    return jax.vmap(lambda x, c, z: divergence(lambda v: field(t, v, c), x, z))(y, context, probes)


def integrate_divergence(field: Callable, y: jax.Array, t0: float, t1: float, context=None, probes=None,
                         **options) -> tuple[jax.Array, jax.Array, jax.Array]:
    """The state at ``t1`` from ``y`` ``(n, D)`` at ``t0``, and ``int_{t0}^{t1} div v dt`` per row.

    Parameters
    ----------
    field:
        Per-example ``(t, x, c) -> dx/dt`` (flat ``x`` ``(D,)``), a PyTree.
    context:
        ``(n, C)`` rows handed to ``field``, or None.
    probes:
        ``(n, D)`` Hutchinson probes (:func:`rademacher_probes`), or None for the exact trace.
    options:
        Of :func:`solve` (``steps``, ``rtol``, ``atol``, ``max_steps``, ``dt0``).

    Returns
    -------
    ``(y_t1 (n, D), integral (n,), num_steps)``.
    """
    state = (y, jnp.zeros(y.shape[0], y.dtype))
    (end, integral), num_steps = solve(_augmented, state, t0, t1, (field, context, probes), **options)
    return end, integral, num_steps


def log_prob_through_ode(field: Callable, y: jax.Array, t0: float, t1: float, end_log_prob: Callable,
                         context=None, probes=None, **options) -> jax.Array:
    """``log p_{t0}(y) = log p_{t1}(y_{t1}) + int_{t0}^{t1} div v dt`` for each row of ``y`` ``(n, D)``: ``(n,)``.

    ``end_log_prob`` maps the ``(n, D)`` states at ``t1`` to their ``(n,)`` log-densities; the
    other arguments are those of :func:`integrate_divergence`.
    """
    end, integral, _ = integrate_divergence(field, y, t0, t1, context, probes, **options)
    return end_log_prob(end) + integral
