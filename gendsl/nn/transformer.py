"""A causal (decoder-only) transformer with a key/value cache for one-position-at-a-time sampling."""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp

from gendsl.core.signatures import LAYER_LIMIT, WIDTH_LIMIT, Param, Signature
from gendsl.nn.base import Network
from gendsl.nn.layers import dense

__all__ = ["Transformer"]

#: ``transformer(...)`` in the language
TRANSFORMER_SIGNATURE = Signature("transformer", "network", (
        Param("layers", "int", 2, limit=LAYER_LIMIT),
        Param("width", "int", 64, limit=WIDTH_LIMIT),
        Param("heads", "int", 4, limit=1024),
        Param("components", "int", 8, limit=1024),
    ), "causal transformer")


def _norm(layer: eqx.nn.LayerNorm, h: jax.Array) -> jax.Array:
    """Layer norm over the last axis of ``(..., W)``."""
    return jnp.vectorize(layer, signature="(w)->(w)")(h)


def _attend(q: jax.Array, keys: jax.Array, values: jax.Array, positions: jax.Array) -> jax.Array:
    """Causal multi-head attention.

    Parameters
    ----------
    q:
        Queries ``(..., Q, H, dh)``, at sequence positions ``positions`` ``(Q,)``.
    keys, values:
        ``(..., N, H, dh)`` for positions ``0 .. N-1``; a query at ``t`` sees positions ``<= t``.

    Returns
    -------
    ``(..., Q, H * dh)``.
    """
    scores = jnp.einsum("...qhd,...khd->...hqk", q, keys) / math.sqrt(q.shape[-1])
    visible = jnp.arange(keys.shape[-3])[None, :] <= positions[:, None]
    weights = jax.nn.softmax(jnp.where(visible, scores, -jnp.inf), axis=-1)
    out = jnp.einsum("...hqk,...khd->...qhd", weights, values)
    return out.reshape(*out.shape[:-2], -1)


class _Block(eqx.Module):
    """Pre-norm transformer block: causal self-attention and a 4x-wide GELU MLP, both residual."""

    norm1: eqx.nn.LayerNorm
    qkv: eqx.nn.Linear
    proj: eqx.nn.Linear
    norm2: eqx.nn.LayerNorm
    up: eqx.nn.Linear
    down: eqx.nn.Linear
    heads: int = eqx.field(static=True)

    def __init__(self, width: int, heads: int, *, key: jax.Array):
        k1, k2, k3, k4 = jax.random.split(key, 4)
        self.norm1, self.norm2 = eqx.nn.LayerNorm(width), eqx.nn.LayerNorm(width)
        self.qkv = eqx.nn.Linear(width, 3 * width, key=k1)
        self.proj = eqx.nn.Linear(width, width, key=k2)
        self.up = eqx.nn.Linear(width, 4 * width, key=k3)
        self.down = eqx.nn.Linear(4 * width, width, key=k4)
        self.heads = heads

    def _qkv(self, h: jax.Array) -> jax.Array:
        """``(..., T, W)`` -> ``(3, ..., T, H, dh)``: queries, keys and values."""
        out = dense(self.qkv, _norm(self.norm1, h)).reshape(*h.shape[:-1], 3, self.heads, -1)
        return jnp.moveaxis(out, -3, 0)

    def _finish(self, h: jax.Array, attended: jax.Array) -> jax.Array:
        """Residual projection and MLP: ``(..., T, W)`` -> ``(..., T, W)``."""
        h = h + dense(self.proj, attended)
        return h + dense(self.down, jax.nn.gelu(dense(self.up, _norm(self.norm2, h))))

    def __call__(self, h: jax.Array) -> jax.Array:
        """Whole sequence at once: ``(..., N, W)`` -> ``(..., N, W)``."""
        q, k, v = self._qkv(h)
        return self._finish(h, _attend(q, k, v, jnp.arange(h.shape[-2])))

    def step(self, h: jax.Array, cache: tuple[jax.Array, jax.Array], t: jax.Array):
        """One new position ``t``: h ``(..., 1, W)``, cache (keys, values) ``(..., N, H, dh)`` each.

        Returns the block's output ``(..., 1, W)`` and the cache with position ``t`` written.
        """
        q, k, v = self._qkv(h)
        keys = jax.lax.dynamic_update_slice_in_dim(cache[0], k, t, axis=-3)
        values = jax.lax.dynamic_update_slice_in_dim(cache[1], v, t, axis=-3)
        return self._finish(h, _attend(q, keys, values, t[None])), (keys, values)


class Transformer(eqx.Module):
    """Causal (decoder-only) transformer: ``(..., N)`` sequences -> ``(..., N, out_size)`` outputs.

    Output ``t`` depends on ``x_<t`` only: position ``t`` reads a learned start vector (``t = 0``)
    or the embedding of ``x_{t-1}``, plus a learned position embedding and, when ``context > 0``,
    a linear embedding of the context vector. Tokens (``vocab`` set) use an embedding table; reals
    a linear embedding of the scalar. :meth:`step` computes one position from a key/value cache.
    Leading dimensions are batch.
    """

    embed: eqx.nn.Embedding | eqx.nn.Linear
    start: jax.Array
    position: jax.Array
    context_embed: eqx.nn.Linear | None
    blocks: tuple[_Block, ...]
    norm: eqx.nn.LayerNorm
    head: eqx.nn.Linear
    vocab: int | None = eqx.field(static=True)

    def __init__(self, length: int, out_size: int, *, vocab: int | None = None, context: int = 0,
                 layers: int = 2, width: int = 64, heads: int = 4, key: jax.Array):
        keys = jax.random.split(key, layers + 5)
        self.embed = eqx.nn.Embedding(vocab, width, key=keys[0]) if vocab else eqx.nn.Linear(1, width, key=keys[0])
        self.start = 0.1 * jax.random.normal(keys[1], (width,))
        self.position = 0.1 * jax.random.normal(keys[2], (length, width))
        self.context_embed = eqx.nn.Linear(context, width, key=keys[3]) if context else None
        self.blocks = tuple(_Block(width, heads, key=k) for k in keys[5:])
        self.norm = eqx.nn.LayerNorm(width)
        self.head = eqx.nn.Linear(width, out_size, key=keys[4])
        self.vocab = vocab

    def _input(self, prev: jax.Array, t: jax.Array, context: jax.Array | None) -> jax.Array:
        """Inputs ``(..., T, W)`` of positions ``t`` ``(T,)`` whose previous elements are ``prev`` ``(..., T)``."""
        emb = self.embed.weight[prev] if self.vocab else dense(self.embed, prev[..., None].astype(jnp.float32))
        h = jnp.where((t == 0)[:, None], self.start, emb) + self.position[t]
        return h if self.context_embed is None else h + dense(self.context_embed, context)[..., None, :]

    def _output(self, h: jax.Array) -> jax.Array:
        return dense(self.head, _norm(self.norm, h))

    def __call__(self, x: jax.Array, context: jax.Array | None = None) -> jax.Array:
        """Teacher-forced outputs for every position: x ``(..., N)``, context ``(..., C)`` -> ``(..., N, out_size)``."""
        prev = jnp.concatenate([x[..., :1], x[..., :-1]], axis=-1)
        h = self._input(prev, jnp.arange(x.shape[-1]), context)
        for block in self.blocks:
            h = block(h)
        return self._output(h)

    def init_cache(self, batch_shape: tuple[int, ...] = ()) -> tuple:
        """An empty key/value cache: per layer a (keys, values) pair of ``(*batch_shape, N, H, dh)`` zeros."""
        heads = self.blocks[0].heads
        shape = (*batch_shape, self.position.shape[0], heads, self.start.shape[0] // heads)
        return tuple((jnp.zeros(shape), jnp.zeros(shape)) for _ in self.blocks)

    def step(self, cache: tuple, prev: jax.Array, t: jax.Array, context: jax.Array | None = None):
        """Output ``(..., out_size)`` of position ``t`` given ``x_{t-1} = prev`` ``(...)``, and the new cache.

        Only position ``t``'s query, key and value are computed; earlier ones come from ``cache``.
        """
        h = self._input(prev[..., None], t[None], context)
        new = []
        for block, layer_cache in zip(self.blocks, cache):
            h, layer_cache = block.step(h, layer_cache, t)
            new.append(layer_cache)
        return self._output(h)[..., 0, :], tuple(new)


#: the ``transformer`` entry of the network table
NETWORK = Network(TRANSFORMER_SIGNATURE, "autoregressive")
