"""Layers shared by the networks: a dense layer as one 2-D matmul over leading axes, a 2-D
convolution as a matmul over shifted copies of the image, and dropout (active only in training)."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.custom_batching import custom_vmap

__all__ = ["dense", "Conv2d", "Dropout"]


def dense(layer: eqx.nn.Linear, h: jax.Array, mask: np.ndarray | None = None) -> jax.Array:
    """A linear layer (optionally masked) on ``(..., in)`` -> ``(..., out)``, as one 2-D matmul."""
    weight = layer.weight if mask is None else jnp.where(mask, layer.weight, 0.0)
    out = h.reshape(-1, h.shape[-1]) @ weight.T + layer.bias
    return out.reshape(*h.shape[:-1], out.shape[-1])


class Conv2d(eqx.Module):
    """A ``k x k`` convolution of one image ``(C_in, H, W)`` -> ``(C_out, ceil(H / stride),
    ceil(W / stride))`` with zero padding ``k // 2`` (``eqx.nn.Conv2d``'s weights and initialisation).

    It is computed as one contraction of the weights with the ``k * k`` shifted copies of the
    padded image, not by XLA's convolution: on CPU a convolution inside a ``lax.scan`` (the
    training loop's chunks) runs tens of times slower than outside it, a contraction does not.
    """

    weight: jax.Array
    bias: jax.Array
    stride: int = eqx.field(static=True)

    def __init__(self, c_in: int, c_out: int, kernel: int = 3, stride: int = 1, *, key: jax.Array):
        k_w, k_b = jax.random.split(key)
        bound = 1.0 / np.sqrt(c_in * kernel * kernel)
        self.weight = jax.random.uniform(k_w, (c_out, c_in, kernel, kernel), minval=-bound, maxval=bound)
        self.bias = jax.random.uniform(k_b, (c_out, 1, 1), minval=-bound, maxval=bound)
        self.stride = stride

    def __call__(self, x: jax.Array) -> jax.Array:
        k, s = self.weight.shape[-1], self.stride
        _, h, w = x.shape
        out_h, out_w = -(-h // s), -(-w // s)
        padded = jnp.pad(x, ((0, 0), (k // 2, k // 2), (k // 2, k // 2)))
        shifted = jnp.stack([jnp.stack([padded[:, dy: dy + s * (out_h - 1) + 1: s, dx: dx + s * (out_w - 1) + 1: s]
                                        for dx in range(k)], axis=1) for dy in range(k)], axis=1)
        return jnp.einsum("oiyx,iyxhw->ohw", self.weight, shifted) + self.bias


@custom_vmap
def _keep_mask(key: jax.Array, like: jax.Array, rate: float) -> jax.Array:
    """Bernoulli(1 - rate) keep mask of ``like``'s shape; under ``vmap`` every example draws its own
    (one key for the whole batch), so a per-example network gets independent masks."""
    return jax.random.bernoulli(key, 1.0 - rate, like.shape)


@_keep_mask.def_vmap
def _keep_mask_batched(axis_size, in_batched, key, like, rate):
    key_batched, like_batched, _ = in_batched
    if key_batched:
        like = like if like_batched else jnp.broadcast_to(like, (axis_size, *like.shape))
        return jax.vmap(lambda k, l: jax.random.bernoulli(k, 1.0 - rate, l.shape))(key, like), True
    like = like if like_batched else jnp.broadcast_to(like, (axis_size, *like.shape))
    return _keep_mask(key, like, rate), True  # an enclosing vmap batches this call in turn


class Dropout(eqx.Module):
    """Inverted dropout of ``(...)`` activations at ``rate`` while it holds a ``key`` (training, see
    :func:`gendsl.nn.base.training`); the identity when ``key`` is None (inference: every module as
    built). Under ``vmap`` each example draws its own mask."""

    rate: float = eqx.field(static=True)
    key: jax.Array | None = None

    def __call__(self, h: jax.Array) -> jax.Array:
        if self.key is None or self.rate == 0.0:
            return h
        keep = _keep_mask(self.key, jax.lax.stop_gradient(h), self.rate)
        return jnp.where(keep, h / (1.0 - self.rate), 0.0)
