"""A labelled 16x16 image set that is not digits: six procedurally drawn shapes, saved as 8-bit
pixels for ``gendsl fit --data FILE.npz``.

Classes (``label``): 0 disc, 1 square, 2 triangle, 3 cross, 4 bar (horizontal or vertical), 5
ring. Each image places one shape at a random centre (kept inside the frame) with a random size
(radius 3-6.5 pixels), rotation (square, triangle, cross: within 45 degrees), brightness (140-255
over a background of 10-40) and Gaussian pixel noise (standard deviation 6 levels); edges are
anti-aliased by 4x4 supersampling. numpy's generator with a fixed seed makes it reproducible.
The file holds ``x`` ``(N, 1, 16, 16)`` uint8 and ``label`` ``(N, 1)`` int32.

    python benchmarks/shapes.py --n 6000 --out runs/shapes16.npz
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

__all__ = ["CLASSES", "SIZE", "shapes", "main"]

CLASSES = ("disc", "square", "triangle", "cross", "bar", "ring")
SIZE = 16
_SUPER = 4


def _mask(kind: str, u: np.ndarray, v: np.ndarray, r: float) -> np.ndarray:
    """Whether each point ``(u, v)`` (pixel units around the centre, rotated) lies in the shape."""
    if kind == "disc":
        return u ** 2 + v ** 2 <= r ** 2
    if kind == "square":
        return (np.abs(u) <= 0.8 * r) & (np.abs(v) <= 0.8 * r)
    if kind == "triangle":  # apex up, base at v = 0.6 r
        return (v <= 0.6 * r) & (v >= -r) & (np.abs(u) <= (v + r) * 0.6)
    if kind == "cross":
        w = 0.3 * r
        return ((np.abs(u) <= w) & (np.abs(v) <= r)) | ((np.abs(v) <= w) & (np.abs(u) <= r))
    if kind == "bar":
        return (np.abs(u) <= r) & (np.abs(v) <= 0.35 * r)
    if kind == "ring":
        d2 = u ** 2 + v ** 2
        return (d2 <= r ** 2) & (d2 >= (0.55 * r) ** 2)
    raise ValueError(kind)


def shapes(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` images ``(n, 1, 16, 16)`` uint8 and their labels ``(n, 1)`` int32, classes in turn."""
    rng = np.random.default_rng(seed)
    fine = (np.arange(SIZE * _SUPER) + 0.5) / _SUPER
    ys, xs = np.meshgrid(fine, fine, indexing="ij")
    images = np.empty((n, 1, SIZE, SIZE), np.uint8)
    labels = (np.arange(n) % len(CLASSES)).astype(np.int32)
    for i, label in enumerate(labels):
        kind = CLASSES[label]
        r = rng.uniform(3.0, 6.5)
        cy, cx = rng.uniform(r, SIZE - r, size=2)
        angle = rng.uniform(-np.pi / 4, np.pi / 4) if kind in ("square", "triangle", "cross") else 0.0
        if kind == "bar" and rng.random() < 0.5:
            angle = np.pi / 2
        c, s = np.cos(angle), np.sin(angle)
        du, dv = xs - cx, ys - cy
        inside = _mask(kind, c * du + s * dv, -s * du + c * dv, r)
        cover = inside.reshape(SIZE, _SUPER, SIZE, _SUPER).mean(axis=(1, 3))
        background, bright = rng.uniform(10, 40), rng.uniform(140, 255)
        pixels = background + (bright - background) * cover + rng.normal(0.0, 6.0, (SIZE, SIZE))
        images[i, 0] = np.clip(np.round(pixels), 0, 255).astype(np.uint8)
    order = rng.permutation(n)
    return images[order], labels[order][:, None]


def main(argv=None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=6000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("runs/shapes16.npz"))
    args = parser.parse_args(argv)
    x, label = shapes(args.n, args.seed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, x=x, label=label)
    print(f"{args.out}: x {x.shape} {x.dtype}, label {label.shape}, classes {', '.join(CLASSES)}")
    return args.out


if __name__ == "__main__":
    main()
