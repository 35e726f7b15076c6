"""Training objectives of energy-based models, as pure functions of a log-density.

Each takes ``logdensity(u, given_one) -> scalar``, the model's unnormalised log-density of ONE
example in unconstrained coordinates (whose gradient in ``u`` is the model's score), and a batch
``u`` of shape ``(n, d)`` with its conditioning ``given`` (arrays with a leading ``n``).

- :func:`dsm_loss`: denoising score matching (Vincent 2011): the score at ``u + sigma * eps``
  regressed on ``-eps / sigma``.
- :func:`ssm_loss`: sliced score matching with variance reduction (Song et al. 2019):
  ``v^T (d score / du) v + |score|^2 / 2`` for Gaussian projections ``v`` (one Jacobian-vector
  product each).
- :func:`cd_loss`: contrastive divergence: mean energy of the data minus that of negatives drawn
  by an MCMC kernel from the model (gradient-stopped), plus an L2 penalty on both energies
  (Du & Mordatch 2019), which keeps the energies near zero.
"""

from __future__ import annotations

import math
from typing import Callable

import jax
import jax.numpy as jnp

from gendsl.core.catalog import Table
from gendsl.core.signatures import STEP_LIMIT, Param, Signature

__all__ = ["OBJECTIVES", "dsm_loss", "ssm_loss", "cd_loss"]

#: ``dsm(...)`` in the language
DSM_SIGNATURE = Signature("dsm", "objective", (Param("sigma", "number", 0.1),), "denoising score matching")
#: ``ssm(...)`` in the language
SSM_SIGNATURE = Signature("ssm", "objective", (Param("projections", "int", 1, limit=1024),), "sliced score matching")
#: ``cd(...)`` in the language
CD_SIGNATURE = Signature("cd", "objective", (
        Param("steps", "int", 20, limit=STEP_LIMIT), Param("buffer", "int", 1024, limit=10**6), Param("reinit", "number", 0.05),
        Param("alpha", "number", 0.1, doc="weight of the L2 penalty on the energies"),
    ), "contrastive divergence with a replay buffer")


def _normal(key: jax.Array, shape: tuple[int, ...], dtype) -> jax.Array:
    """Standard normal noise drawn flat (multi-dimensional threefry draws compile slowly in x64)."""
    return jax.random.normal(key, (math.prod(shape),), dtype).reshape(shape)


def _score(logdensity: Callable) -> Callable:
    return jax.grad(logdensity)


def dsm_loss(logdensity: Callable, u: jax.Array, given: dict, key: jax.Array, sigma: float) -> jax.Array:
    """Denoising score matching at noise level ``sigma``: ``mean |sigma * s(u~) + eps|^2 / 2`` (scalar)."""
    eps = _normal(key, u.shape, u.dtype)
    score = jax.vmap(_score(logdensity))(u + sigma * eps, given)
    return 0.5 * jnp.mean(jnp.sum((sigma * score + eps) ** 2, axis=-1))


def ssm_loss(logdensity: Callable, u: jax.Array, given: dict, key: jax.Array, projections: int) -> jax.Array:
    """Sliced score matching (variance-reduced), averaged over ``projections`` Gaussian directions (scalar)."""
    v = _normal(key, (projections, *u.shape), u.dtype)
    score = _score(logdensity)

    def one(u1, g1, v1):
        s, hv = jax.jvp(lambda q: score(q, g1), (u1,), (v1,))
        return jnp.dot(v1, hv) + 0.5 * jnp.sum(s ** 2)

    per = jax.vmap(lambda vp: jax.vmap(one)(u, given, vp))(v)
    return jnp.mean(per)


def cd_loss(energy: Callable, u: jax.Array, negatives: jax.Array, given: dict, alpha: float) -> jax.Array:
    """Contrastive divergence: ``mean E(u) - mean E(neg) + alpha * mean(E(u)^2 + E(neg)^2)`` (scalar).

    ``energy(u, given_one) -> scalar`` is the trainable energy; ``negatives`` (shape of ``u``) are
    model draws, treated as constants.
    """
    negatives = jax.lax.stop_gradient(negatives)
    e_pos = jax.vmap(energy)(u, given)
    e_neg = jax.vmap(energy)(negatives, given)
    return jnp.mean(e_pos) - jnp.mean(e_neg) + alpha * jnp.mean(e_pos ** 2 + e_neg ** 2)


#: training objectives of network energies, by name (each entry its signature)
OBJECTIVES = Table("objective", {s.name: s for s in (DSM_SIGNATURE, SSM_SIGNATURE, CD_SIGNATURE)})
