"""The shared interface of bijections and their composition.

A bijection maps ONE example ``z`` of shape ``(dim,)`` to ``x`` of the same shape, optionally
conditioned on a context vector of shape ``(cond_dim,)``, and returns ``log|det dx/dz|`` with it;
the inverse returns ``log|det dz/dx|``. The mechanism ``jax.vmap``-s them over the batch.

Flows are compositions: :class:`Scan` applies a stack of layers of one structure (one trace, one
compiled loop body, whatever the depth), reordering the elements between layers.
Each map of the language (``coupling``, ``spline``, ``maf``) is a builder with its signature,
listed in :data:`~gendsl.mechanisms.pushforward.bijections.BIJECTIONS`; the generic tests loop
over that table, so a new map is covered by them for free.
"""

from __future__ import annotations

import abc
from typing import Callable, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from gendsl.core.signatures import Signature

__all__ = [
    "AbstractBijection",
    "Scan",
    "Bijection",
    "layer_permutations",
    "positive_scale",
    "squash",
]


class AbstractBijection(eqx.Module):
    """A conditional bijection of ``(dim,)`` vectors.

    Attributes
    ----------
    dim:
        Size of one example.
    cond_dim:
        Size of the context vector (0: unconditional; the context is then ``None``).
    """

    dim: eqx.AbstractVar[int]
    cond_dim: eqx.AbstractVar[int]

    @abc.abstractmethod
    def transform_and_log_det(self, z: jax.Array, context: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
        """``z`` ``(dim,)`` -> ``(x, log|det dx/dz|)`` with ``x`` ``(dim,)`` and a scalar."""

    @abc.abstractmethod
    def inverse_and_log_det(self, x: jax.Array, context: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
        """``x`` ``(dim,)`` -> ``(z, log|det dz/dx|)`` with ``z`` ``(dim,)`` and a scalar."""

    def cost(self) -> int:
        """Sequential network passes of one forward (sampling) transform: 1 for a one-shot map.

        Layers applied one after another form one pass of the whole map, so a stack costs
        what its layers cost (an autoregressive layer needs ``dim`` passes, one per element).
        """
        return 1


class Scan(AbstractBijection):
    """A stack of layers of one structure, applied in turn, each followed by a fixed permutation.

    Build the stack with ``eqx.filter_vmap(make_layer)(keys)`` (a leading layer axis on every
    array). Layer ``0`` acts first on the way ``z -> x``, last on the way back. The permutations
    are static (tuples), so the module's arrays are exactly its trained parameters and its
    structure can be known without running anything (``eqx.filter_eval_shape``).
    """

    layers: AbstractBijection
    perms: tuple[tuple[int, ...], ...] = eqx.field(static=True)
    dim: int = eqx.field(static=True)
    cond_dim: int = eqx.field(static=True)

    def __init__(self, layers: AbstractBijection, perms):
        self.layers = layers
        self.perms = tuple(tuple(int(i) for i in p) for p in perms)
        self.dim, self.cond_dim = layers.dim, layers.cond_dim

    @property
    def depth(self) -> int:
        return len(self.perms)

    def transform_and_log_det(self, z, context=None):
        arrays, static = eqx.partition(self.layers, eqx.is_array)
        perms = jnp.asarray(np.array(self.perms, np.int32))

        def body(carry, xs):
            y, total = carry
            layer_arrays, perm = xs
            y, log_det = eqx.combine(layer_arrays, static).transform_and_log_det(y, context)
            return (y[perm], total + log_det), None

        (x, total), _ = jax.lax.scan(body, (z, jnp.zeros((), z.dtype)), (arrays, perms))
        return x, total

    def inverse_and_log_det(self, x, context=None):
        arrays, static = eqx.partition(self.layers, eqx.is_array)
        inverse_perms = jnp.asarray(np.argsort(np.array(self.perms, np.int32), axis=-1).astype(np.int32))

        def body(carry, xs):
            y, total = carry
            layer_arrays, inverse_perm = xs
            y, log_det = eqx.combine(layer_arrays, static).inverse_and_log_det(y[inverse_perm], context)
            return (y, total + log_det), None

        (z, total), _ = jax.lax.scan(body, (x, jnp.zeros((), x.dtype)), (arrays, inverse_perms), reverse=True)
        return z, total

    def cost(self) -> int:
        """One pass through the stack per pass its layers need (the layers run in sequence)."""
        return self.layers.cost()


def layer_permutations(dim: int, layers: int) -> np.ndarray:
    """The permutation that follows each layer, ``(layers, dim)`` integers.

    Reversal for ``dim <= 2`` (alternating halves), fixed pseudo-random permutations above
    (the same for every initialisation key, so parameters of any run share one structure).
    """
    if dim <= 2:
        return np.tile(np.arange(dim)[::-1], (layers, 1))
    rng = np.random.default_rng(20240611)
    return np.stack([rng.permutation(dim) for _ in range(layers)])


#: softplus offset so that a raw value of 0 gives a scale of exactly 1
_MIN_SCALE = 1e-2
_SCALE_OFFSET = float(np.log(np.expm1(1.0 - _MIN_SCALE)))


def positive_scale(raw: jax.Array) -> jax.Array:
    """A stable positive scale: ``softplus(raw + c) + 0.01``, exactly 1 at ``raw = 0``.

    Linear (not exponential) growth for large ``raw`` and a floor at 0.01 keep log-dets bounded.
    Affine layers multiply by it on the density pass (data -> latent) and divide on the sampling
    pass: dividing by the floor on the density pass amplifies 100x per layer off the data.
    """
    return jax.nn.softplus(raw + _SCALE_OFFSET) + _MIN_SCALE


#: conditioner inputs are squashed into ``(-SQUASH_BOUND, SQUASH_BOUND)``
SQUASH_BOUND = 3.0


def squash(h: jax.Array) -> jax.Array:
    """``SQUASH_BOUND * tanh(h / SQUASH_BOUND)`` elementwise: near the identity on ``|h| <~ 1``.

    Conditioners see their inputs through it, so their outputs (shifts, scales, knots) are
    bounded functions of ``x``: off the training data a layer acts as it does at the data's edge
    instead of as the linear extrapolation of a network, which compounds over layers.
    """
    return SQUASH_BOUND * jnp.tanh(h / SQUASH_BOUND)


class Bijection(NamedTuple):
    """An entry of the bijection table: a map's signature and its builder
    ``build(spec, dim, cond_dim, *, key) -> AbstractBijection``."""

    signature: Signature
    build: Callable[..., AbstractBijection]
