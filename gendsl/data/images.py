"""8-bit images as real variables: dequantised into (-1, 1) for training, quantised back for samples.

A ``uint8`` array of an image-shaped real variable (``real[C, H, W]``, channels first, or
``real[H, W]``) holds pixel levels 0..255. Training sees ``(p + u) / 128 - 1`` with ``u`` uniform
on (0, 1) (uniform dequantisation: a density on the reals whose likelihood is that of the
discrete levels, up to the constant ``D log 128``), kept :data:`EDGE` from the ends of the unit
interval so that float32 rounding never moves a value into the next level. Samples go back by
``floor((x + 1) * 128)`` clipped to 0..255: the inverse of the dequantisation for every value.
"""

from __future__ import annotations

import numpy as np

__all__ = ["EDGE", "is_pixels", "dequantise", "quantise"]

#: distance of the dequantisation noise from 0 and 1 (float32 spacing below 1 is 6e-8, 8e-6 levels)
EDGE = 1e-4


def is_pixels(array, shape: tuple) -> bool:
    """Whether ``array`` (``(n, *shape)``) holds 8-bit pixels of an image-shaped variable."""
    return np.asarray(array).dtype == np.uint8 and len(shape) in (2, 3)


def dequantise(pixels, rng: np.random.Generator) -> np.ndarray:
    """``uint8`` levels (any shape) -> float32 in (-1, 1): ``(p + u) / 128 - 1``, ``u ~ U(EDGE, 1 - EDGE)``."""
    pixels = np.asarray(pixels)
    u = rng.uniform(EDGE, 1.0 - EDGE, size=pixels.shape)
    return ((pixels.astype(np.float64) + u) / 128.0 - 1.0).astype(np.float32)


def quantise(x) -> np.ndarray:
    """Values in (-1, 1) (any shape; samples may stray outside) -> ``uint8`` levels
    ``clip(floor((x + 1) * 128), 0, 255)``."""
    levels = np.floor((np.asarray(x, dtype=np.float64) + 1.0) * 128.0)
    return np.clip(np.nan_to_num(levels, nan=0.0), 0, 255).astype(np.uint8)
