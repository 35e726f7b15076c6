"""Network constructors (equinox modules) shared by the mechanisms.

Every constructor takes explicit sizes and a keyword ``key`` and returns an ``eqx.Module`` that
maps one example (unbatched) to one output; mechanisms ``jax.vmap`` them over the batch.
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
    """Masked autoregressive MLP: ``(n_elements,)`` values and ``(context,)`` -> ``(n_elements, out_per)``.

    Row ``d`` of the output depends only on elements ``x_<d`` and on the context. Tokens
    (``vocab`` set) enter one-hot; reals enter as they are.
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
        """``x``: ``(n_elements,)`` (ints for tokens); ``context``: ``(context,)`` -> ``(n_elements, out_per)``."""
        h = jax.nn.one_hot(x, self.vocab).reshape(-1) if self.vocab else x.astype(jnp.float32)
        if self.context:
            h = jnp.concatenate([h, context])
        masks = made_masks(self.n_elements, self.vocab or 1, self.out_per, self.context, self.hidden)
        act = ACTIVATIONS[self.activation]
        for i, (layer, mask) in enumerate(zip(self.layers, masks)):
            h = jnp.where(mask, layer.weight, 0.0) @ h + layer.bias
            if i < len(self.layers) - 1:
                h = act(h)
        return h.reshape(self.n_elements, self.out_per)


# -- causal transformer with a key/value cache ------------------------------------------------------


def _attend(q: jax.Array, keys: jax.Array, values: jax.Array, t: jax.Array) -> jax.Array:
    """Causal attention of one query at position ``t``: q ``(H, dh)``, keys/values ``(N, H, dh)`` -> ``(H * dh,)``."""
    scores = jnp.einsum("hd,khd->hk", q, keys) / math.sqrt(q.shape[-1])
    scores = jnp.where(jnp.arange(keys.shape[0]) <= t, scores, -jnp.inf)
    return jnp.einsum("hk,khd->hd", jax.nn.softmax(scores, axis=-1), values).reshape(-1)


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
        """``(W,)`` -> ``(3, H, dh)``: query, key and value of one position."""
        return self.qkv(self.norm1(h)).reshape(3, self.heads, -1)

    def _finish(self, h: jax.Array, attended: jax.Array) -> jax.Array:
        h = h + self.proj(attended)
        return h + self.down(jax.nn.gelu(self.up(self.norm2(h))))

    def __call__(self, h: jax.Array) -> jax.Array:
        """Whole sequence at once: ``(N, W)`` -> ``(N, W)``."""
        q, k, v = jnp.moveaxis(jax.vmap(self._qkv)(h), 1, 0)
        attended = jax.vmap(_attend, (0, None, None, 0))(q, k, v, jnp.arange(h.shape[0]))
        return jax.vmap(self._finish)(h, attended)

    def step(self, h: jax.Array, cache: jax.Array, t: jax.Array) -> tuple[jax.Array, jax.Array]:
        """One new position ``t``: h ``(W,)``, cache ``(2, N, H, dh)`` -> (``(W,)``, updated cache)."""
        q, k, v = self._qkv(h)
        cache = cache.at[0, t].set(k).at[1, t].set(v)
        return self._finish(h, _attend(q, cache[0], cache[1], t)), cache


class Transformer(eqx.Module):
    """Causal (decoder-only) transformer: ``(N,)`` sequence -> ``(N, out_size)`` per-position outputs.

    Output ``t`` depends on ``x_<t`` only: position ``t`` reads a learned start vector (``t = 0``)
    or the embedding of ``x_{t-1}``, plus a learned position embedding and, when ``context > 0``,
    a linear embedding of the context vector. Tokens (``vocab`` set) use an embedding table; reals
    a linear embedding of the scalar. :meth:`step` computes one position from a key/value cache.
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

    @property
    def length(self) -> int:
        return self.position.shape[0]

    def _input(self, prev: jax.Array, t: jax.Array, context: jax.Array | None) -> jax.Array:
        """Input vector ``(W,)`` of position ``t``, whose previous element is ``prev``."""
        emb = self.embed(prev) if self.vocab else self.embed(jnp.reshape(prev, (1,)).astype(jnp.float32))
        h = jnp.where(t == 0, self.start, emb) + self.position[t]
        return h if self.context_embed is None else h + self.context_embed(context)

    def __call__(self, x: jax.Array, context: jax.Array | None = None) -> jax.Array:
        """Teacher-forced outputs for every position: x ``(N,)``, context ``(C,)`` -> ``(N, out_size)``."""
        positions = jnp.arange(self.length)
        prev = jnp.concatenate([x[:1], x[:-1]])
        h = jax.vmap(self._input, (0, 0, None))(prev, positions, context)
        for block in self.blocks:
            h = block(h)
        return jax.vmap(lambda v: self.head(self.norm(v)))(h)

    def init_cache(self) -> jax.Array:
        """An empty key/value cache, shape ``(layers, 2, N, H, dh)``."""
        block = self.blocks[0]
        width = self.start.shape[0]
        return jnp.zeros((len(self.blocks), 2, self.length, block.heads, width // block.heads))

    def step(self, cache: jax.Array, prev: jax.Array, t: jax.Array,
             context: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
        """Output ``(out_size,)`` of position ``t`` given ``x_{t-1} = prev``, and the updated cache.

        Only position ``t``'s query, key and value are computed; earlier ones come from ``cache``.
        """
        h = self._input(prev, t, context)
        new = []
        for block, c in zip(self.blocks, cache):
            h, c = block.step(h, c, t)
            new.append(c)
        return self.head(self.norm(h)), jnp.stack(new)
