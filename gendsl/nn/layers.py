"""Layers shared by the batched networks: a dense layer as one 2-D matmul over leading axes."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["dense"]


def dense(layer: eqx.nn.Linear, h: jax.Array, mask: np.ndarray | None = None) -> jax.Array:
    """A linear layer (optionally masked) on ``(..., in)`` -> ``(..., out)``, as one 2-D matmul."""
    weight = layer.weight if mask is None else jnp.where(mask, layer.weight, 0.0)
    out = h.reshape(-1, h.shape[-1]) @ weight.T + layer.bias
    return out.reshape(*h.shape[:-1], out.shape[-1])
