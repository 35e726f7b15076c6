"""Training objectives of energy-based models, as pure functions of a log-density.

Each takes ``logdensity(u, given_one) -> scalar``, the model's unnormalised log-density of ONE
example in unconstrained coordinates (whose gradient in ``u`` is the model's score), and a batch
``u`` of shape ``(n, d)`` with its conditioning ``given`` (arrays with a leading ``n``).

- :func:`dsm_loss`: denoising score matching (Vincent 2011): the score at ``u + sigma * eps``
  regressed on ``-eps / sigma``. With ``levels=L > 1`` (:func:`noise_levels`) the log-density is
  noise-conditional, ``logdensity(u, given_one, sigma)``, each example draws one of ``L`` levels
  geometric from ``sigma_max`` down to ``sigma``, and the loss is weighted by ``sigma^2`` (NCSN,
  Song & Ermon 2019), which is the same ``|sigma * score + eps|^2 / 2`` at every level.
- :func:`ssm_loss`: sliced score matching with variance reduction (Song et al. 2019):
  ``v^T (d score / du) v + |score|^2 / 2`` for Gaussian projections ``v`` (one Jacobian-vector
  product each).
- :func:`cd_loss`: contrastive divergence: mean energy of the data minus that of negatives drawn
  by an MCMC kernel from the model (gradient-stopped), plus an L2 penalty on both energies
  (Du & Mordatch 2019), which keeps the energies near zero; the energy network's gradient is
  clipped to a global norm (:func:`clip_gradient`, optax's ``clip_by_global_norm``), so one bad
  batch of negatives cannot throw the energy far.
"""

from __future__ import annotations

import math
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from gendsl.core.catalog import Table
from gendsl.core.signatures import STEP_LIMIT, Param, Signature, Spec, default_spec
from gendsl.errors import GenDataError

__all__ = ["OBJECTIVES", "training_objective", "noise_levels", "dsm_loss", "ssm_loss", "cd_loss", "clip_gradient"]

#: ``dsm(...)`` in the language
DSM_SIGNATURE = Signature("dsm", "objective", (
        Param("sigma", "number", 0.1, doc="the (smallest) noise level, in standard deviations of the data"),
        Param("sigma_max", "number", 1.0, doc="the largest noise level, when levels > 1"),
        Param("levels", "int", 8, limit=1000, doc="noise levels, geometric from sigma_max to sigma (1: sigma only)"),
    ), "denoising score matching (several levels: a noise-conditional energy)")
#: ``ssm(...)`` in the language
SSM_SIGNATURE = Signature("ssm", "objective", (Param("projections", "int", 1, limit=1024),), "sliced score matching")
#: ``cd(...)`` in the language
CD_SIGNATURE = Signature("cd", "objective", (
        Param("steps", "int", 20, limit=STEP_LIMIT), Param("buffer", "int", 1024, limit=10**6), Param("reinit", "number", 0.05),
        Param("alpha", "number", 0.1, doc="weight of the L2 penalty on the energies"),
        Param("clip", "number", 1.0, doc="global norm the energy network's gradient is clipped to (0: no clipping)"),
    ), "contrastive divergence with a replay buffer")


def _normal(key: jax.Array, shape: tuple[int, ...], dtype) -> jax.Array:
    """Standard normal noise drawn flat (multi-dimensional threefry draws compile slowly in x64)."""
    return jax.random.normal(key, (math.prod(shape),), dtype).reshape(shape)


def _score(logdensity: Callable) -> Callable:
    return jax.grad(logdensity)


def training_objective(spec):
    """The objective an ``energy(...)`` spec trains by: its ``train=``, else ``dsm()`` with its
    defaults for a network energy; None for an expression (nothing to train)."""
    train = spec.get("train")
    if train is not None or not isinstance(spec["E"], Spec):
        return train
    return default_spec(DSM_SIGNATURE)


def noise_levels(objective) -> np.ndarray:
    """``(L,)`` the noise levels of a ``dsm(...)`` spec, largest first; ``(0,)`` for any other objective."""
    if objective is None or objective.name != "dsm":
        return np.zeros(0)
    if objective["levels"] <= 1:
        return np.array([float(objective["sigma"])])
    if not objective["sigma_max"] > objective["sigma"] > 0:
        raise GenDataError(f"dsm(levels={objective['levels']}) needs sigma_max > sigma > 0, got "
                           f"sigma_max={objective['sigma_max']:g} and sigma={objective['sigma']:g}: give a sigma_max above sigma, "
                           f"or levels=1 for one level")
    return np.geomspace(float(objective["sigma_max"]), float(objective["sigma"]), int(objective["levels"]))


def dsm_loss(logdensity: Callable, u: jax.Array, given: dict, key: jax.Array, sigmas) -> jax.Array:
    """Denoising score matching: ``mean |sigma * s(u~) + eps|^2 / 2`` (scalar).

    ``sigmas`` a number or of shape ``(1,)``: one level, ``logdensity(u, given_one)``; ``(L,)`` with
    ``L > 1``: a level drawn per example, ``logdensity(u, given_one, sigma)`` (noise-conditional).
    """
    sigmas = np.atleast_1d(sigmas)
    if len(sigmas) == 1:
        sigma = float(sigmas[0])
        eps = _normal(key, u.shape, u.dtype)
        score = jax.vmap(_score(logdensity))(u + sigma * eps, given)
        return 0.5 * jnp.mean(jnp.sum((sigma * score + eps) ** 2, axis=-1))
    k_eps, k_level = jax.random.split(key)
    eps = _normal(k_eps, u.shape, u.dtype)
    sigma = jnp.asarray(sigmas, u.dtype)[jax.random.randint(k_level, (u.shape[0],), 0, len(sigmas))]
    score = jax.vmap(_score(logdensity))(u + sigma[:, None] * eps, given, sigma)
    return 0.5 * jnp.mean(jnp.sum((sigma[:, None] * score + eps) ** 2, axis=-1))


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


def clip_gradient(tree, max_norm: float):
    """``tree`` unchanged, whose gradient is clipped to global norm ``max_norm`` (optax's
    ``clip_by_global_norm``) on the way back; ``max_norm <= 0``: no clipping."""
    if max_norm <= 0:
        return tree
    clip = optax.clip_by_global_norm(max_norm)

    @jax.custom_vjp
    def identity(t):
        return t

    def backward(_, cotangent):
        return (clip.update(cotangent, clip.init(cotangent))[0],)

    identity.defvjp(lambda t: (t, None), backward)
    return identity(tree)


#: training objectives of network energies, by name (each entry its signature)
OBJECTIVES = Table("objective", {s.name: s for s in (DSM_SIGNATURE, SSM_SIGNATURE, CD_SIGNATURE)})
