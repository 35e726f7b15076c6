"""Stan's windowed warm-up for the HMC family, hosted here so it shares one scan with sampling.

The step size follows blackjax's dual averaging towards the target acceptance rate throughout;
NUTS and HMC also estimate the inverse mass matrix in the slow windows of the schedule of their
``mass=`` entry of :data:`~gendsl.numerics.adaptation.METRICS` (a blackjax
:class:`~blackjax.adaptation.metric_recipes.MetricCore` fed each draw and its gradient), restarting
dual averaging from the window's average step size at the end of each window, as blackjax's
``window_adaptation`` does. Written as ``(init, update, final)`` of ONE chain so the driver in
:mod:`gendsl.numerics.mcmc` runs warm-up and sampling in a single ``lax.scan``.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gendsl.numerics.adaptation import METRICS

__all__ = ["Tuning", "Adaptation", "adaptation", "schedule"]


class Tuning(NamedTuple):
    """What warm-up hands to sampling (per chain): the step size and the inverse mass matrix (an
    array, or blackjax's ``LowRankInverseMassMatrix`` for ``mass="lowrank"``)."""

    step_size: jax.Array
    inverse_mass_matrix: jax.Array


class Adaptation(NamedTuple):
    """Warm-up state of one chain: dual averaging, the mass-matrix core's state, the tuning in force."""

    dual_averaging: Any
    metric: Any
    tuning: Tuning


def adaptation(config, dim: int, dtype, num_warmup: int):
    """``(init, update, final)`` of one chain's warm-up, after blackjax's staged window adaptation.

    The step size follows dual averaging towards ``config.target_accept`` throughout; NUTS and
    HMC also estimate the inverse mass matrix with their ``mass=`` entry of
    :data:`~gendsl.numerics.adaptation.METRICS` in the slow windows of its schedule, restarting
    dual averaging from the window's average step size at the end of each window.
    ``update(adapt, stage, window_end, position, grad, acceptance_rate)`` takes the new draw
    ``(d,)`` and its log-density gradient ``(d,)``.
    """
    # blackjax is imported where it is used: importing it starts the XLA backend, and a multi-host
    # run must call jax.distributed.initialize (the CLI's --coordinator) before that happens
    from blackjax.adaptation.step_size import dual_averaging_adaptation

    da_init, da_update, da_final = dual_averaging_adaptation(config.target_accept)
    core = METRICS[config.metric(dim)].build(num_warmup) if config.adapts_mass else None

    def cast(imm):
        return jax.tree.map(lambda a: jnp.asarray(a, dtype), imm)

    fixed_imm = cast(core.init(dim).inverse_mass_matrix) if core is not None else jnp.ones(dim, dtype)

    def init(position) -> Adaptation:
        metric = core.init(dim) if core is not None else ()
        return Adaptation(da_init(jnp.asarray(config.step_size, dtype)), metric,
                          Tuning(jnp.asarray(config.step_size, dtype), fixed_imm))

    def update(adapt: Adaptation, stage, window_end, position, grad, acceptance_rate) -> Adaptation:
        da = da_update(adapt.dual_averaging, jnp.nan_to_num(acceptance_rate))
        metric = adapt.metric
        if core is None:
            return Adaptation(da, metric, Tuning(jnp.exp(da.log_step_size).astype(dtype), fixed_imm))
        metric = jax.lax.cond(stage == 1, lambda m: core.update(m, position, grad), lambda m: m, metric)

        def end_window(da_metric):
            da, metric = da_metric
            return da_init(da_final(da)), core.final(metric)

        da, metric = jax.lax.cond(window_end, end_window, lambda dm: dm, (da, metric))
        return Adaptation(da, metric, Tuning(jnp.exp(da.log_step_size).astype(dtype),
                                             cast(metric.inverse_mass_matrix)))

    def final(adapt: Adaptation) -> Tuning:
        imm = cast(adapt.metric.inverse_mass_matrix) if core is not None else fixed_imm
        return Tuning(jnp.asarray(da_final(adapt.dual_averaging), dtype), imm)

    return init, update, final


def schedule(config, dim: int, num_warmup: int, total: int) -> jax.Array:
    """``(total, 2)`` int array: (stage, window end) of each transition; zeros after warm-up."""
    if config.adapts_mass and num_warmup:
        stages = jnp.asarray(METRICS[config.metric(dim)].schedule(num_warmup), jnp.int32)
    else:
        stages = jnp.zeros((num_warmup, 2), jnp.int32)
    return jnp.concatenate([stages, jnp.zeros((total - num_warmup, 2), jnp.int32)])
