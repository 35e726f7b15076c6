"""A convolutional encoder: a stack of convolutions with pooling, then an MLP head, mapping an
image (and extra features) to a vector: energies, critics, classifiers.

It is a ``vector`` network (:mod:`gendsl.nn.images`): one example's input is the image ``(C, H, W)``
flattened, then extra features, which join the flattened convolutional features at the head.
"""

from __future__ import annotations

from typing import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp

from gendsl.core.signatures import ACTIVATION, WIDTH_LIMIT, Param, Signature
from gendsl.nn.activations import ACTIVATIONS
from gendsl.nn.base import Network
from gendsl.nn.images import FEATURE_LIMIT, check_sizes, image_refusal, image_shape, split_input
from gendsl.nn.layers import Conv2d
from gendsl.nn.mlp import MLP

__all__ = ["ConvEncoder", "pool", "build", "refuse"]

#: ``conv(...)`` in the language
CONV_SIGNATURE = Signature("conv", "network", (
        Param("channels", "ints", (16, 32), limit=FEATURE_LIMIT,
              doc="channels of each level: a 3x3 convolution, the activation and a 2x2 average pooling"),
        Param("hidden", "ints", (64,), limit=WIDTH_LIMIT, doc="hidden widths of the MLP head"),
        Param("activation", "str", "silu", ACTIVATION, doc="after each convolution and hidden layer"),
    ), "a convolutional encoder (convolutions and pooling, then an MLP) over an image variable real[C, H, W]")


def pool(h: jax.Array) -> jax.Array:
    """2x2 average pooling of ``(C, H, W)`` -> ``(C, ceil(H/2), ceil(W/2))`` (odd sizes: the last row
    and column are repeated)."""
    c, height, width = h.shape
    h = jnp.pad(h, ((0, 0), (0, height % 2), (0, width % 2)), mode="edge")
    return h.reshape(c, h.shape[1] // 2, 2, h.shape[2] // 2, 2).mean(axis=(2, 4))


class ConvEncoder(eqx.Module):
    """``(C*H*W + F,) -> (out_size,)`` for one example: convolutions and poolings over the image,
    its features flattened and joined by the ``F`` extra inputs, then an MLP."""

    convs: tuple[Conv2d, ...]
    head: MLP
    event_shape: tuple[int, ...] = eqx.field(static=True)
    activation: str = eqx.field(static=True)

    def __init__(self, event_shape: tuple[int, ...], in_size: int, out_size: int, channels: Sequence[int] = (16, 32),
                 hidden: Sequence[int] = (64,), activation: str = "silu", *, key: jax.Array, zero_last: bool = False):
        c, h, w = check_sizes("conv", event_shape, in_size)
        features = in_size - c * h * w
        self.event_shape, self.activation = tuple(event_shape), activation
        keys = jax.random.split(key, len(channels) + 1)
        self.convs = tuple(Conv2d(a, b, 3, key=k)
                           for a, b, k in zip([c, *channels[:-1]], channels, keys))
        for _ in channels:
            h, w = -(-h // 2), -(-w // 2)
        flat = channels[-1] * h * w
        self.head = MLP(flat + features, out_size, hidden, activation,
                        key=keys[-1], zero_last=zero_last)

    def features(self, x: jax.Array) -> jax.Array:
        """The head's last hidden activations ``(hidden[-1],)``: the learned features of one example."""
        image, extra = split_input(x, self.event_shape)
        act = ACTIVATIONS[self.activation]
        h = image
        for conv in self.convs:
            h = pool(act(conv(h)))
        return self.head.features(jnp.concatenate([h.reshape(-1), extra]))

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.head.layers[-1](self.features(x))


def refuse(spec, event_shape: tuple) -> str | None:
    """Why ``conv(...)`` cannot model an event of shape ``event_shape``, or None."""
    return image_refusal(event_shape)


def build(spec, in_size: int, out_size: int, *, key: jax.Array, zero_last: bool = False,
          input_gain: jax.Array | None = None, event_shape: tuple[int, ...] | None = None) -> ConvEncoder:
    """A :class:`ConvEncoder` from a resolved ``conv(...)`` spec for events of shape ``event_shape``.

    ``input_gain`` ``(in_size,)`` scales the first convolution by the image inputs' mean gain and
    the head's columns of the extra features by their gains.
    """
    net = ConvEncoder(event_shape, in_size, out_size, spec["channels"], spec["hidden"], spec["activation"],
                      key=key, zero_last=zero_last)
    if input_gain is not None:
        c, h, w = image_shape(event_shape)
        size = c * h * w
        first = net.head.layers[0]
        flat = first.in_features - (in_size - size)
        columns = jnp.concatenate([jnp.ones(flat), input_gain[size:]])
        net = eqx.tree_at(lambda m: (m.convs[0].weight, m.head.layers[0].weight), net,
                          (net.convs[0].weight * jnp.mean(input_gain[:size]), first.weight * columns))
    return net


#: the ``conv`` entry of the network table
NETWORK = Network(CONV_SIGNATURE, "vector", build, refuse)
