"""The multilayer perceptron: ``(in_size,) -> (out_size,)`` for one example (mechanisms ``vmap`` it)."""

from __future__ import annotations

from typing import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp

from gendsl.core.signatures import ACTIVATION, WIDTH_LIMIT, Param, Signature
from gendsl.nn.activations import ACTIVATIONS
from gendsl.nn.base import Network

__all__ = ["MLP", "build"]

#: ``mlp(...)`` in the language
MLP_SIGNATURE = Signature("mlp", "network", (
        Param("hidden", "ints", (64, 64), limit=WIDTH_LIMIT),
        Param("activation", "str", "silu", ACTIVATION),
        Param("components", "int", 8, limit=1024, doc="mixture components when used by factorize on reals"),
    ), "a multilayer perceptron")


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

    def features(self, x: jax.Array) -> jax.Array:
        """The last hidden layer's activations ``(hidden[-1],)`` (the input when there is none)."""
        act = ACTIVATIONS[self.activation]
        for layer in self.layers[:-1]:
            x = act(layer(x))
        return x

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.layers[-1](self.features(x))


def build(spec, in_size: int, out_size: int, *, key: jax.Array, zero_last: bool = False,
          input_gain: jax.Array | None = None, event_shape: tuple[int, ...] | None = None) -> MLP:
    """An :class:`MLP` from a resolved ``mlp(...)`` spec; ``input_gain`` ``(in_size,)`` multiplies the
    first layer's weight columns (each input's initial scale). ``event_shape`` is not read: an MLP
    sees every event flattened."""
    net = MLP(in_size, out_size, spec["hidden"], spec["activation"], key=key, zero_last=zero_last)
    if input_gain is not None:
        net = eqx.tree_at(lambda m: m.layers[0].weight, net, net.layers[0].weight * input_gain)
    return net


#: the ``mlp`` entry of the network table
NETWORK = Network(MLP_SIGNATURE, "vector", build)

