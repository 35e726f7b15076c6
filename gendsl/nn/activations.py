"""Activation functions a network option may name (``activation="silu"``)."""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

__all__ = ["ACTIVATIONS"]

ACTIVATIONS: dict[str, Callable] = {
    "silu": jax.nn.silu,
    "relu": jax.nn.relu,
    "tanh": jnp.tanh,
    "gelu": jax.nn.gelu,
    "elu": jax.nn.elu,
    "softplus": jax.nn.softplus,
}
