"""How an image network reads the generic vector-network input: the event flattened, then extra
features.

Every vector network maps one example ``(in_size,) -> (out_size,)``, its first inputs the variable's
event flattened (row-major) and the rest whatever the mechanism appends (time features, context,
a "present" flag). An image network is also told the event shape: ``(C, H, W)`` is an image of
``C`` channels (channels first), ``(H, W)`` one of a single channel; other shapes are no image.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["image_shape", "image_refusal", "split_input", "check_sizes", "group_count", "upsample", "FEATURE_LIMIT"]

#: the largest channel count an image network's option may ask for
FEATURE_LIMIT = 4096


def image_shape(event_shape: tuple[int, ...]) -> tuple[int, int, int] | None:
    """``(C, H, W)`` of an event shape ``(C, H, W)`` or ``(H, W)`` (one channel); None otherwise."""
    if len(event_shape) == 3:
        return tuple(int(d) for d in event_shape)
    if len(event_shape) == 2:
        return (1, *(int(d) for d in event_shape))
    return None


def image_refusal(event_shape: tuple) -> str | None:
    """Why an image network cannot read an event of shape ``event_shape`` (its rank only: sizes may
    still be unbound at check time), or None when it can."""
    if len(event_shape) in (2, 3):
        return None
    return ("it reads an image, a variable of type real[C, H, W] (channels first) or real[H, W] "
            "(one channel)")


def split_input(x: jax.Array, event_shape: tuple[int, ...]) -> tuple[jax.Array, jax.Array]:
    """Split one example's input ``(in_size,)`` into the image ``(C, H, W)`` and the extra features
    ``(in_size - C*H*W,)`` (possibly empty)."""
    c, h, w = image_shape(event_shape)
    size = c * h * w
    return x[:size].reshape(c, h, w), x[size:]


def check_sizes(name: str, event_shape: tuple[int, ...] | None, in_size: int) -> tuple[int, int, int]:
    """The ``(C, H, W)`` an image network ``name`` is built for; ``ValueError`` when the event is no
    image or the input is smaller than it (the mechanisms' checks refuse those before a build)."""
    shape = image_shape(tuple(event_shape or ()))
    if shape is None or shape[0] * shape[1] * shape[2] > in_size:
        raise ValueError(f"{name}(...) reads an image event of shape (C, H, W) or (H, W) at the start of its "
                         f"input; got event shape {event_shape} and {in_size} inputs")
    return shape


def group_count(groups: int, channels: int) -> int:
    """The most groups, at most ``groups``, that divide ``channels`` (GroupNorm needs a divisor)."""
    return max(g for g in range(1, min(groups, channels) + 1) if channels % g == 0)


def upsample(h: jax.Array, like: tuple[int, int]) -> jax.Array:
    """Nearest-neighbour doubling of ``(C, H, W)``, cropped to ``like`` (H, W) (odd sizes)."""
    h = jnp.repeat(jnp.repeat(h, 2, axis=1), 2, axis=2)
    return h[:, :like[0], :like[1]]
