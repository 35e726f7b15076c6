"""Stan's windowed warm-up for the HMC family, hosted here so it shares one scan with sampling.

The step size follows blackjax's dual averaging towards the target acceptance rate throughout;
NUTS and HMC also estimate the inverse mass matrix in the slow windows of blackjax's
:func:`~blackjax.adaptation.window_adaptation.build_schedule` with a blackjax
:class:`~blackjax.adaptation.metric_recipes.MetricCore` (:func:`scaled_welford_core`), restarting
dual averaging from the window's average step size at the end of each window, as blackjax's
``window_adaptation`` does. Written as ``(init, update, final)`` of ONE chain so the driver in
:mod:`gendsl.numerics.mcmc` runs warm-up and sampling in a single ``lax.scan``.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

__all__ = ["Tuning", "Adaptation", "SHRINKAGE", "scaled_welford_core", "adaptation", "schedule"]


class Tuning(NamedTuple):
    """What warm-up hands to sampling (per chain): the step size and the inverse mass matrix."""

    step_size: jax.Array
    inverse_mass_matrix: jax.Array


class Adaptation(NamedTuple):
    """Warm-up state of one chain: dual averaging, the mass-matrix core's state, the tuning in force."""

    dual_averaging: Any
    metric: Any
    tuning: Tuning


#: weight of the shrinkage target in the windowed mass-matrix estimate, as Stan's ``1e-3``
SHRINKAGE = 1e-3


def scaled_welford_core(dense: bool):
    """blackjax's Welford covariance estimate as a metric core, regularised relative to each
    coordinate's own variance.

    Stan (and blackjax's ``welford_*`` recipes) shrink a window's covariance ``S`` of ``n`` draws
    towards ``1e-3 * I``: ``n/(n+5) S + 5/(n+5) 1e-3 I``. The absolute ``1e-3`` swamps coordinates
    whose posterior variance is that small (a slope on an unscaled covariate) and erases strong
    correlations (its intercept), leaving a metric that forces tiny steps. This core shrinks
    towards ``1e-3 * diag(S)`` instead, the same rule in units of each coordinate's scale (and
    the same inverse mass matrix as Stan's for unit variances).
    """
    # blackjax is imported where it is used: importing it starts the XLA backend, and a multi-host
    # run must call jax.distributed.initialize (the CLI's --coordinator) before that happens
    from blackjax.adaptation.mass_matrix import MassMatrixAdaptationState, welford_algorithm
    from blackjax.adaptation.metric_recipes import MetricCore

    w_init, w_update, w_final = welford_algorithm(not dense)

    def init(n_dims: int) -> MassMatrixAdaptationState:
        return MassMatrixAdaptationState(jnp.eye(n_dims) if dense else jnp.ones(n_dims), w_init(n_dims))

    def update(state: MassMatrixAdaptationState, position, grad=None) -> MassMatrixAdaptationState:
        return MassMatrixAdaptationState(state.inverse_mass_matrix, w_update(state.wc_state, position))

    def final(state: MassMatrixAdaptationState) -> MassMatrixAdaptationState:
        covariance, count, _ = w_final(state.wc_state)
        weight = count / (count + 5.0)
        variances = jnp.diagonal(covariance) if dense else covariance
        target = SHRINKAGE * jnp.maximum(variances, jnp.finfo(variances.dtype).tiny)
        imm = weight * covariance + (1 - weight) * (jnp.diag(target) if dense else target)
        return MassMatrixAdaptationState(imm, w_init(variances.shape[0]))

    return MetricCore(init=init, update=update, final=final)


def adaptation(config, dim: int, dtype):
    """``(init, update, final)`` of one chain's warm-up, after blackjax's staged window adaptation.

    The step size follows dual averaging towards ``config.target_accept`` throughout; NUTS and
    HMC also estimate the inverse mass matrix (:func:`scaled_welford_core`, diagonal or dense) in
    the slow windows of :func:`~blackjax.adaptation.window_adaptation.build_schedule`, restarting
    dual averaging from the window's average step size at the end of each window.
    """
    # blackjax is imported where it is used: importing it starts the XLA backend, and a multi-host
    # run must call jax.distributed.initialize (the CLI's --coordinator) before that happens
    from blackjax.adaptation.step_size import dual_averaging_adaptation

    da_init, da_update, da_final = dual_averaging_adaptation(config.target_accept)
    dense = config.adapts_mass and config.dense(dim)
    core = scaled_welford_core(dense) if config.adapts_mass else None
    fixed_imm = jnp.eye(dim, dtype=dtype) if dense else jnp.ones(dim, dtype)

    def init(position) -> Adaptation:
        metric = core.init(dim) if core is not None else ()
        return Adaptation(da_init(jnp.asarray(config.step_size, dtype)), metric,
                          Tuning(jnp.asarray(config.step_size, dtype), fixed_imm))

    def update(adapt: Adaptation, stage, window_end, position, acceptance_rate) -> Adaptation:
        da = da_update(adapt.dual_averaging, jnp.nan_to_num(acceptance_rate))
        metric = adapt.metric
        if core is None:
            return Adaptation(da, metric, Tuning(jnp.exp(da.log_step_size).astype(dtype), fixed_imm))
        metric = jax.lax.cond(stage == 1, lambda m: core.update(m, position, None), lambda m: m, metric)

        def end_window(da_metric):
            da, metric = da_metric
            return da_init(da_final(da)), core.final(metric)

        da, metric = jax.lax.cond(window_end, end_window, lambda dm: dm, (da, metric))
        return Adaptation(da, metric, Tuning(jnp.exp(da.log_step_size).astype(dtype),
                                             metric.inverse_mass_matrix.astype(dtype)))

    def final(adapt: Adaptation) -> Tuning:
        imm = adapt.metric.inverse_mass_matrix.astype(dtype) if core is not None else fixed_imm
        return Tuning(jnp.asarray(da_final(adapt.dual_averaging), dtype), imm)

    return init, update, final


def schedule(config, num_warmup: int, total: int) -> jax.Array:
    """``(total, 2)`` int array: (stage, window end) of each transition; zeros after warm-up."""
    from blackjax.adaptation.window_adaptation import build_schedule  # see scaled_welford_core

    if config.adapts_mass and num_warmup:
        stages = jnp.asarray(build_schedule(num_warmup), jnp.int32).reshape(num_warmup, 2)
    else:
        stages = jnp.zeros((num_warmup, 2), jnp.int32)
    return jnp.concatenate([stages, jnp.zeros((total - num_warmup, 2), jnp.int32)])
