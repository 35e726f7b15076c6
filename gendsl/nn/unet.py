"""The U-Net: residual convolutional blocks with GroupNorm, down- and upsampling with skip
connections, optional self-attention, and FiLM conditioning on the extra input features.

It is a ``vector`` network (:mod:`gendsl.nn.images`): one example's input is the image ``(C, H, W)``
flattened, then extra features (an evolve's time features and context, an energy's context); those
pass through a small MLP into an embedding that scales and shifts every residual block (FiLM).
When the output has the image's size the network returns an image (flattened); otherwise (an
energy, a critic) it pools the encoder's deepest features into a linear layer. Odd sizes work:
downsampling rounds up, upsampling crops to the skip connection's size.
"""

from __future__ import annotations

from typing import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp

from gendsl.core.signatures import Param, Signature
from gendsl.nn.base import Network
from gendsl.nn.images import FEATURE_LIMIT, check_sizes, group_count, image_refusal, split_input, upsample
from gendsl.nn.layers import Conv2d, Dropout

__all__ = ["UNet", "ResBlock", "SelfAttention", "build", "refuse"]

#: ``unet(...)`` in the language
UNET_SIGNATURE = Signature("unet", "network", (
        Param("channels", "int", 32, limit=FEATURE_LIMIT, doc="channels of the first level"),
        Param("mults", "ints", (1, 2), limit=64,
              doc="channel multiplier of each level (its length: the levels; each after the first halves H and W)"),
        Param("blocks", "int", 1, limit=16, doc="residual blocks per level (at least 1)"),
        Param("attention", "ints", (), limit=64, doc="levels (1-based) that end with self-attention, e.g. [2]"),
        Param("groups", "int", 8, limit=FEATURE_LIMIT,
              doc="GroupNorm groups (lowered to a divisor of each level's channels)"),
        Param("dropout", "number", 0.0, doc="dropout rate inside every residual block, in training only"),
    ), "a U-Net over an image variable real[C, H, W] (channels first), FiLM-conditioned on time and context")


def _zero(module):
    """``module`` with its weight and bias at zero."""
    return eqx.tree_at(lambda m: (m.weight, m.bias), module, (jnp.zeros_like(module.weight), jnp.zeros_like(module.bias)))


class ResBlock(eqx.Module):
    """``h + conv(dropout(silu(FiLM(norm(conv(silu(norm(h))))))))`` on ``(C_in, H, W)`` -> ``(C_out, H,
    W)``; FiLM's scale and shift come from the embedding ``(E,)`` (absent when there is none), and
    the dropout acts in training only (:func:`gendsl.nn.base.training`)."""

    norm1: eqx.nn.GroupNorm
    conv1: Conv2d
    norm2: eqx.nn.GroupNorm
    conv2: Conv2d
    film: eqx.nn.Linear | None
    skip: Conv2d | None
    dropout: Dropout | None

    def __init__(self, c_in: int, c_out: int, emb: int, groups: int, dropout: float = 0.0, *, key: jax.Array):
        k1, k2, k3, k4 = jax.random.split(key, 4)
        self.norm1 = eqx.nn.GroupNorm(group_count(groups, c_in), c_in)
        self.conv1 = Conv2d(c_in, c_out, 3, key=k1)
        self.norm2 = eqx.nn.GroupNorm(group_count(groups, c_out), c_out)
        self.conv2 = Conv2d(c_out, c_out, 3, key=k2)
        self.film = eqx.nn.Linear(emb, 2 * c_out, key=k3) if emb else None
        self.skip = Conv2d(c_in, c_out, 1, key=k4) if c_in != c_out else None
        self.dropout = Dropout(dropout) if dropout > 0 else None

    def __call__(self, h: jax.Array, emb: jax.Array | None) -> jax.Array:
        r = self.norm2(self.conv1(jax.nn.silu(self.norm1(h))))
        if self.film is not None:
            scale, shift = jnp.split(self.film(emb), 2)
            r = r * (1 + scale[:, None, None]) + shift[:, None, None]
        r = jax.nn.silu(r)
        r = self.conv2(r if self.dropout is None else self.dropout(r))
        return (h if self.skip is None else self.skip(h)) + r


class SelfAttention(eqx.Module):
    """Residual single-head self-attention over the ``H * W`` positions of ``(C, H, W)``."""

    norm: eqx.nn.GroupNorm
    attention: eqx.nn.MultiheadAttention

    def __init__(self, channels: int, groups: int, *, key: jax.Array):
        self.norm = eqx.nn.GroupNorm(group_count(groups, channels), channels)
        self.attention = eqx.nn.MultiheadAttention(1, channels, key=key)

    def __call__(self, h: jax.Array) -> jax.Array:
        c, height, width = h.shape
        tokens = self.norm(h).reshape(c, height * width).T
        return h + self.attention(tokens, tokens, tokens).T.reshape(c, height, width)


class Level(eqx.Module):
    """A level's residual blocks, then optional self-attention."""

    blocks: tuple[ResBlock, ...]
    attention: SelfAttention | None

    def __init__(self, c_in: int, c_out: int, blocks: int, emb: int, groups: int, attention: bool,
                 dropout: float = 0.0, *, key):
        keys = jax.random.split(key, blocks + 1)
        self.blocks = tuple(ResBlock(c_in if i == 0 else c_out, c_out, emb, groups, dropout, key=keys[i])
                            for i in range(blocks))
        self.attention = SelfAttention(c_out, groups, key=keys[-1]) if attention else None

    def __call__(self, h, emb):
        for block in self.blocks:
            h = block(h, emb)
        return h if self.attention is None else self.attention(h)


class UNet(eqx.Module):
    """A U-Net ``(C*H*W + F,) -> (out_size,)`` for one example (mechanisms ``vmap`` it).

    The first ``C*H*W`` inputs are the image (channels first), the other ``F`` the features FiLM
    reads. ``out_size == C*H*W``: the decoder's image, flattened; otherwise the mean of the
    deepest features through a linear layer. ``zero_last`` starts the output at zero.
    """

    embed: tuple[eqx.nn.Linear, eqx.nn.Linear] | None
    stem: Conv2d
    down: tuple[Level, ...]
    downsample: tuple[Conv2d, ...]
    middle: Level
    up: tuple[Level, ...]
    upsample: tuple[Conv2d, ...]
    out_norm: eqx.nn.GroupNorm
    out: Conv2d | eqx.nn.Linear
    event_shape: tuple[int, ...] = eqx.field(static=True)

    def __init__(self, event_shape: tuple[int, ...], in_size: int, out_size: int, channels: int = 32,
                 mults: Sequence[int] = (1, 2), blocks: int = 1, attention: Sequence[int] = (), groups: int = 8,
                 dropout: float = 0.0, *, key: jax.Array, zero_last: bool = False):
        c, h, w = check_sizes("unet", event_shape, in_size)
        self.event_shape = tuple(event_shape)
        widths = [channels * m for m in mults]
        features = in_size - c * h * w
        emb = 4 * channels if features else 0
        keys = iter(jax.random.split(key, 4 * len(widths) + 6))
        self.embed = (eqx.nn.Linear(features, emb, key=next(keys)), eqx.nn.Linear(emb, emb, key=next(keys))) \
            if features else None
        self.stem = Conv2d(c, widths[0], 3, key=next(keys))
        attend = [level - 1 in attention for level in range(1, len(widths) + 1)]
        ins = [widths[0], *widths[:-1]]
        self.down = tuple(Level(a, b, blocks, emb, groups, att, dropout, key=next(keys))
                          for a, b, att in zip(ins, widths, attend))
        self.downsample = tuple(Conv2d(b, b, 3, stride=2, key=next(keys)) for b in widths[:-1])
        self.middle = Level(widths[-1], widths[-1], 1, emb, groups, attend[-1], dropout, key=next(keys))
        image_out = out_size == c * h * w
        self.up = tuple(Level(2 * b, b, blocks, emb, groups, att, dropout, key=next(keys))
                        for b, att in zip(widths, attend)) if image_out else ()
        self.upsample = tuple(Conv2d(b, a, 3, key=next(keys)) for a, b in zip(widths[:-1], widths[1:])) \
            if image_out else ()
        last = widths[0] if image_out else widths[-1]
        self.out_norm = eqx.nn.GroupNorm(group_count(groups, last), last)
        self.out = Conv2d(last, c, 3, key=next(keys)) if image_out \
            else eqx.nn.Linear(last, out_size, key=next(keys))
        if zero_last:
            self.out = _zero(self.out)

    def __call__(self, x: jax.Array) -> jax.Array:
        image, features = split_input(x, self.event_shape)
        emb = None
        if self.embed is not None:
            emb = self.embed[1](jax.nn.silu(self.embed[0](features)))
        h = self.stem(image)
        skips = []
        for i, level in enumerate(self.down):
            h = level(h, emb)
            skips.append(h)
            if i < len(self.downsample):
                h = self.downsample[i](h)
        h = self.middle(h, emb)
        if not self.up:
            return self.out(jnp.mean(jax.nn.silu(self.out_norm(h)), axis=(1, 2)))
        for i in reversed(range(len(self.up))):
            h = self.up[i](jnp.concatenate([h, skips[i]]), emb)
            if i > 0:
                h = self.upsample[i - 1](upsample(h, skips[i - 1].shape[1:]))
        return self.out(jax.nn.silu(self.out_norm(h))).reshape(-1)


def refuse(spec, event_shape: tuple) -> str | None:
    """Why ``unet(...)`` (a resolved spec) cannot model an event of shape ``event_shape``, or None."""
    if spec["blocks"] < 1 or spec["groups"] < 1 or spec["channels"] < 1:
        return "its channels, blocks and groups must be at least 1"
    if not 0.0 <= float(spec["dropout"]) < 1.0:
        return f"its dropout must be in [0, 1), got {spec['dropout']}"
    if any(level > len(spec["mults"]) for level in spec["attention"]):
        return f"attention= names levels 1 to {len(spec['mults'])} (one per entry of mults=)"
    return image_refusal(event_shape)


def build(spec, in_size: int, out_size: int, *, key: jax.Array, zero_last: bool = False,
          input_gain: jax.Array | None = None, event_shape: tuple[int, ...] | None = None) -> UNet:
    """A :class:`UNet` from a resolved ``unet(...)`` spec for events of shape ``event_shape``.

    ``input_gain`` ``(in_size,)`` scales the stem's weights by the image inputs' mean gain and the
    embedding's first weight columns by the features' gains.
    """
    net = UNet(event_shape, in_size, out_size, spec["channels"], spec["mults"], spec["blocks"],
               tuple(level - 1 for level in spec["attention"]), spec["groups"], float(spec["dropout"]), key=key,
               zero_last=zero_last)
    if input_gain is not None:
        size = in_size - (net.embed[0].in_features if net.embed is not None else 0)
        net = eqx.tree_at(lambda m: m.stem.weight, net, net.stem.weight * jnp.mean(input_gain[:size]))
        if net.embed is not None:
            net = eqx.tree_at(lambda m: m.embed[0].weight, net, net.embed[0].weight * input_gain[size:])
    return net


#: the ``unet`` entry of the network table
NETWORK = Network(UNET_SIGNATURE, "vector", build, refuse)
