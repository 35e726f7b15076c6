"""The mass-matrix estimators of warm-up (``mass=`` of NUTS and HMC), one table entry each.

Every estimator is a blackjax :class:`~blackjax.adaptation.metric_recipes.MetricCore`
(``init(d)``, ``update(state, position, grad)``, ``final(state)``, the inverse mass matrix in
``state.inverse_mass_matrix``) run over the slow windows of a schedule:

- ``"diagonal"``, ``"dense"``: Stan's windowed covariance of the draws (:func:`scaled_welford_core`),
  on Stan's windows (:func:`~blackjax.adaptation.window_adaptation.build_schedule`).
- ``"fisher"``: nutpie's Fisher-divergence diagonal, ``sqrt(var(draws) / var(gradients))`` per
  coordinate over a window (blackjax's ``fisher_diag`` recipe), on Stan's windows.
- ``"lowrank"``: nutpie's low-rank plus diagonal inverse mass matrix ``diag(s) (I + U (Λ - 1) U^T)
  diag(s)``: ``s`` the Fisher diagonal's square root; ``U``, ``Λ`` the eigen-directions (at most
  :data:`LOWRANK_MAX_RANK`) of the SPD geometric mean of the scaled draws' covariance and the
  inverse of the scaled gradients' covariance, restricted to the span of the leading
  :data:`LOWRANK_MAX_RANK` singular directions of each (nutpie: their whole span), whose eigenvalue
  lies outside ``[1/c, c]``, ``c =`` :data:`LOWRANK_CUTOFF` (blackjax's ``fisher_low_rank``
  recipe, which follows nuts-rs). blackjax's NUTS takes it as a
  :class:`~blackjax.mcmc.metrics.LowRankInverseMassMatrix`: O(d k) per leapfrog step, never a
  d x d matrix. Stan's windows, each window's draws and gradients kept in a buffer as long as
  the longest window.

A new estimator is one entry of :data:`METRICS`; ``"auto"`` resolves by dimension
(:func:`resolve`).
"""

from __future__ import annotations

import dataclasses
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from gendsl.core.catalog import Table

__all__ = ["Metric", "METRICS", "MASS_CHOICES", "SHRINKAGE", "DENSE_MAX_DIM", "LOWRANK_MAX_DIM", "LOWRANK_MAX_RANK",
           "LOWRANK_CUTOFF", "LOWRANK_GAMMA", "scaled_welford_core", "stan_schedule", "resolve", "as_array"]

#: weight of the shrinkage target in the windowed mass-matrix estimate, as Stan's ``1e-3``
SHRINKAGE = 1e-3
#: ``"auto"`` mass matrix: dense up to this many unconstrained dimensions, low-rank above
DENSE_MAX_DIM = 12
#: ``"auto"`` mass matrix: low-rank up to this many dimensions, diagonal above (the posterior
#: reports the inverse mass matrix of every chain as a d x d matrix)
LOWRANK_MAX_DIM = 1000
#: low-rank: most eigen-directions kept (nutpie's and blackjax's default)
LOWRANK_MAX_RANK = 10
#: low-rank: eigenvalues inside ``[1/c, c]`` are dropped (set to 1), as blackjax's recipe (nutpie's
#: own default is 100: on gp_pois_regr only the diagonal's ESS per gradient, docs/benchmarks.md)
LOWRANK_CUTOFF = 2.0
#: low-rank: regularisation of the projected covariances (nutpie's ``gamma``)
LOWRANK_GAMMA = 1e-5


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


def stan_schedule(num_warmup: int) -> np.ndarray:
    """Stan's warm-up windows: ``(num_warmup, 2)`` int array of (stage, window end) per transition
    (stage 1: the slow windows, where the mass matrix is estimated)."""
    from blackjax.adaptation.window_adaptation import build_schedule  # see scaled_welford_core

    with jax.ensure_compile_time_eval():  # a concrete array also while a caller traces
        return np.asarray(build_schedule(num_warmup), np.int32).reshape(num_warmup, 2)


def _longest_window(schedule: np.ndarray) -> int:
    """Most slow-stage transitions between two window ends (the low-rank buffer's length)."""
    slow = schedule[:, 0] == 1
    ends = np.flatnonzero(schedule[:, 1].astype(bool) & slow)
    counts = np.diff(np.concatenate([[0], np.cumsum(slow)[ends]]))
    return max(int(counts.max()) if counts.size else 1, 1)


def _welford(dense: bool) -> Callable:
    return lambda num_warmup: scaled_welford_core(dense)


def _fisher(num_warmup: int):
    from blackjax.adaptation.metric_recipes import REGISTRY  # see scaled_welford_core

    return REGISTRY["fisher_diag"].build_core()


def _lowrank(num_warmup: int):
    from blackjax.adaptation.metric_recipes import REGISTRY  # see scaled_welford_core

    recipe = dataclasses.replace(REGISTRY["fisher_low_rank"], max_rank=LOWRANK_MAX_RANK, gamma=LOWRANK_GAMMA,
                                 cutoff=LOWRANK_CUTOFF)
    return recipe.build_core(buffer_size=_longest_window(stan_schedule(num_warmup)))


class Metric(NamedTuple):
    """An entry of :data:`METRICS`.

    Attributes
    ----------
    build:
        ``build(num_warmup) -> MetricCore`` (blackjax's ``init`` / ``update(state, position, grad)``
        / ``final`` of one chain).
    schedule:
        ``schedule(num_warmup)``: ``(num_warmup, 2)`` (stage, window end) of each warm-up transition.
    doc:
        What the estimator is, in a few words.
    """

    build: Callable
    schedule: Callable[[int], np.ndarray]
    doc: str


#: the mass-matrix estimators by ``mass=`` name, one entry each
METRICS = Table("mass matrix", {
    "diagonal": Metric(_welford(False), stan_schedule, "Stan's windowed variances of the draws"),
    "dense": Metric(_welford(True), stan_schedule, "Stan's windowed covariance of the draws"),
    "fisher": Metric(_fisher, stan_schedule, "nutpie's Fisher diagonal: sqrt(var(draws) / var(gradients))"),
    "lowrank": Metric(_lowrank, stan_schedule, "nutpie's low-rank plus Fisher diagonal, from draws and gradients"),
})
#: every ``mass=`` value the kernels accept
MASS_CHOICES = ("auto", *METRICS)


def resolve(mass: str, dim: int) -> str:
    """The :data:`METRICS` entry of ``mass`` for a target of ``dim`` dimensions: ``"auto"`` is
    ``"dense"`` up to :data:`DENSE_MAX_DIM` dimensions, ``"lowrank"`` up to :data:`LOWRANK_MAX_DIM`,
    ``"diagonal"`` above."""
    if mass != "auto":
        return mass
    return "dense" if dim <= DENSE_MAX_DIM else "lowrank" if dim <= LOWRANK_MAX_DIM else "diagonal"


def as_array(inverse_mass_matrix) -> jax.Array:
    """An inverse mass matrix as an array: ``(..., d)`` (diagonal) or ``(..., d, d)``; a low-rank
    one (blackjax's ``LowRankInverseMassMatrix`` of ``sigma (..., d)``, ``U (..., d, k)``,
    ``lam (..., k)``) is expanded to its ``(..., d, d)`` matrix."""
    from blackjax.mcmc.metrics import LowRankInverseMassMatrix  # see scaled_welford_core

    if not isinstance(inverse_mass_matrix, LowRankInverseMassMatrix):
        return inverse_mass_matrix
    sigma, u, lam = inverse_mass_matrix
    inner = jnp.eye(sigma.shape[-1], dtype=sigma.dtype) + jnp.einsum("...ik,...k,...jk->...ij", u, lam - 1, u)
    return sigma[..., :, None] * inner * sigma[..., None, :]
