"""Network constructors (equinox modules) shared by the mechanisms.

Every constructor takes explicit sizes and a keyword ``key`` and returns an ``eqx.Module`` that
maps one example (unbatched) to one output; mechanisms ``jax.vmap`` them over the batch. The
autoregressive networks (:class:`MADE`, :class:`Transformer`) also accept leading batch
dimensions directly: their dense layers then run as single 2-D matmuls over the whole batch,
which is markedly faster to differentiate on CPU than a vmapped per-example layer.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["ACTIVATIONS", "MLP", "mlp", "MADE", "made_masks", "Transformer"]

ACTIVATIONS: dict[str, Callable] = {
    "silu": jax.nn.silu,
    "relu": jax.nn.relu,
    "tanh": jnp.tanh,
    "gelu": jax.nn.gelu,
    "elu": jax.nn.elu,
    "softplus": jax.nn.softplus,
}


class MLP(eqx.Module):
    """A multilayer perceptron ``(in_size,) -> (out_size,)`` with given hidden widths.

    ``zero_last=True`` initialises the output layer at zero (identity-at-init flows, residuals).
    """

    layers: tuple[eqx.nn.Linear, ...]
    activation: str = eqx.field(static=True)

    def __init__(self, in_size: int, out_size: int, hidden: Sequence[int], activation: str = "silu",
                 *, key: jax.Array, zero_last: bool = False):
        sizes = [in_size, *hidden, out_size]
        keys = jax.random.split(key, len(sizes) - 1)
        layers = [eqx.nn.Linear(a, b, key=k) for a, b, k in zip(sizes[:-1], sizes[1:], keys)]
        if zero_last:
            last = layers[-1]
            last = eqx.tree_at(lambda l: (l.weight, l.bias), last, (jnp.zeros_like(last.weight), jnp.zeros_like(last.bias)))
            layers[-1] = last
        self.layers = tuple(layers)
        self.activation = activation

    def __call__(self, x: jax.Array) -> jax.Array:
        act = ACTIVATIONS[self.activation]
        for layer in self.layers[:-1]:
            x = act(layer(x))
        return self.layers[-1](x)


def mlp(in_size: int, out_size: int, spec, *, key: jax.Array, zero_last: bool = False) -> MLP:
    """Build an :class:`MLP` from a resolved ``mlp(...)`` spec (or None for the defaults)."""
    hidden = spec.get("hidden", (64, 64)) if spec is not None else (64, 64)
    activation = spec.get("activation", "silu") if spec is not None else "silu"
    return MLP(in_size, out_size, hidden, activation, key=key, zero_last=zero_last)


# -- masked autoregressive MLP ---------------------------------------------------------------------


def _dense(layer: eqx.nn.Linear, h: jax.Array, mask: np.ndarray | None = None) -> jax.Array:
    """A linear layer (optionally masked) on ``(..., in)`` -> ``(..., out)``, as one 2-D matmul."""
    weight = layer.weight if mask is None else jnp.where(mask, layer.weight, 0.0)
    out = h.reshape(-1, h.shape[-1]) @ weight.T + layer.bias
    return out.reshape(*h.shape[:-1], out.shape[-1])


def made_masks(n_elements: int, in_per: int, out_per: int, context: int, hidden: Sequence[int]) -> list[np.ndarray]:
    """Connectivity of a MADE: one boolean ``(out, in)`` mask per linear layer.

    Element ``d`` (0-based) has degree ``d + 1`` at the input and at the output; hidden units have
    degrees in ``0 .. n_elements - 1`` (degree 0 sees only the context); context features have
    degree 0, so they reach every hidden unit. A hidden unit sees inputs of degree ``<=`` its own,
    an output sees hidden units of degree strictly below its own: output ``d`` depends on ``x_<d``.

    Parameters
    ----------
    n_elements, in_per, out_per:
        Sequence length, input features per element (one-hot width or 1), outputs per element.
    context:
        Number of context features appended to the input.
    hidden:
        Hidden widths.

    Returns
    -------
    ``len(hidden) + 1`` boolean arrays; layer ``i``'s mask has shape ``(out_i, in_i)``.
    """
    degrees = [np.concatenate([np.repeat(np.arange(1, n_elements + 1), in_per), np.zeros(context, int)])]
    degrees += [(np.arange(h) * n_elements) // h for h in hidden]
    masks = [b[:, None] >= a[None, :] for a, b in zip(degrees[:-1], degrees[1:])]
    out_degrees = np.repeat(np.arange(1, n_elements + 1), out_per)
    masks.append(out_degrees[:, None] > degrees[-1][None, :])
    return masks


class MADE(eqx.Module):
    """Masked autoregressive MLP: ``(..., n_elements)`` and ``(..., context)`` -> ``(..., n_elements, out_per)``.

    Row ``d`` of the output depends only on elements ``x_<d`` and on the context. Tokens
    (``vocab`` set) enter one-hot; reals enter as they are. Leading dimensions are batch.
    """

    layers: tuple[eqx.nn.Linear, ...]
    n_elements: int = eqx.field(static=True)
    out_per: int = eqx.field(static=True)
    vocab: int | None = eqx.field(static=True)
    context: int = eqx.field(static=True)
    hidden: tuple[int, ...] = eqx.field(static=True)
    activation: str = eqx.field(static=True)

    def __init__(self, n_elements: int, out_per: int, hidden: Sequence[int], *, vocab: int | None = None,
                 context: int = 0, activation: str = "silu", key: jax.Array):
        in_size = n_elements * (vocab or 1) + context
        sizes = [in_size, *hidden, n_elements * out_per]
        keys = jax.random.split(key, len(sizes) - 1)
        self.layers = tuple(eqx.nn.Linear(a, b, key=k) for a, b, k in zip(sizes[:-1], sizes[1:], keys))
        self.n_elements, self.out_per, self.vocab = n_elements, out_per, vocab
        self.context, self.hidden, self.activation = context, tuple(hidden), activation

    def __call__(self, x: jax.Array, context: jax.Array | None = None) -> jax.Array:
        """x ``(..., n_elements)`` (ints for tokens), context ``(..., context)`` -> ``(..., n_elements, out_per)``."""
        lead = x.shape[:-1]
        h = jax.nn.one_hot(x, self.vocab).reshape(*lead, -1) if self.vocab else x.astype(jnp.float32)
        if self.context:
            h = jnp.concatenate([h, context], axis=-1)
        masks = made_masks(self.n_elements, self.vocab or 1, self.out_per, self.context, self.hidden)
        act = ACTIVATIONS[self.activation]
        for layer, mask in zip(self.layers[:-1], masks[:-1]):
            h = act(_dense(layer, h, mask))
        return _dense(self.layers[-1], h, masks[-1]).reshape(*lead, self.n_elements, self.out_per)


# -- causal transformer with a key/value cache ------------------------------------------------------


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
        out = _dense(self.qkv, _norm(self.norm1, h)).reshape(*h.shape[:-1], 3, self.heads, -1)
        return jnp.moveaxis(out, -3, 0)

    def _finish(self, h: jax.Array, attended: jax.Array) -> jax.Array:
        """Residual projection and MLP: ``(..., T, W)`` -> ``(..., T, W)``."""
        h = h + _dense(self.proj, attended)
        return h + _dense(self.down, jax.nn.gelu(_dense(self.up, _norm(self.norm2, h))))

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
        emb = self.embed.weight[prev] if self.vocab else _dense(self.embed, prev[..., None].astype(jnp.float32))
        h = jnp.where((t == 0)[:, None], self.start, emb) + self.position[t]
        return h if self.context_embed is None else h + _dense(self.context_embed, context)[..., None, :]

    def _output(self, h: jax.Array) -> jax.Array:
        return _dense(self.head, _norm(self.norm, h))

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
