"""The built-in data sets: 2-D point sets, labelled blobs, 8x8 digits and a Markov token source
with a known entropy, each drawn i.i.d. from a fixed law by a seeded generator."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from gendsl.data.dataset import Dataset
from gendsl.errors import GenDataError, did_you_mean

__all__ = ["BUILTIN_NAMES", "BUILTIN_LIMIT", "N_DEFAULT", "LABELLED_CENTRES", "DIGITS_SHAPES", "builtin", "labelled_blobs",
           "labelled_digits", "markov_chain",
           "markov_entropy", "quote"]

N_DEFAULT = 10_000
"""Number of examples drawn from a built-in set when the caller does not say."""

MARKOV_LENGTH = 32
MARKOV_VOCAB = 8
_MARKOV_SEED = 20240611
_MARKOV_CONCENTRATION = 0.3


def quote(names: Sequence[str]) -> str:
    """``'a', 'b'`` (or ``none``): variable names in a message."""
    return ", ".join(f"'{v}'" for v in names) if names else "none"


# --------------------------------------------------------------------------- 2-D sets


def _moons(n: int, rng: np.random.Generator) -> np.ndarray:
    """Two interleaved half circles with Gaussian noise (sd 0.1 before scaling), FFJORD scale."""
    t = rng.uniform(0.0, np.pi, n)
    inner = rng.random(n) < 0.5
    x = np.where(inner, 1.0 - np.cos(t), np.cos(t))
    y = np.where(inner, 0.5 - np.sin(t), np.sin(t))
    pts = np.stack([x, y], axis=1) + 0.1 * rng.standard_normal((n, 2))
    return pts * 2.0 + np.array([-1.0, -0.2])


def _eight_gaussians(n: int, rng: np.random.Generator) -> np.ndarray:
    """Eight Gaussians (sd 0.5) on a circle of radius 4, all divided by 1.414, as in FFJORD."""
    angles = np.pi / 4.0 * np.arange(8)
    centers = 4.0 * np.stack([np.cos(angles), np.sin(angles)], axis=1)
    idx = rng.integers(0, 8, n)
    return (centers[idx] + 0.5 * rng.standard_normal((n, 2))) / 1.414


def _checkerboard(n: int, rng: np.random.Generator) -> np.ndarray:
    """Uniform on the dark squares of a 4x4 checkerboard covering [-4, 4]^2, as in FFJORD."""
    x1 = rng.random(n) * 4.0 - 2.0
    x2 = rng.random(n) - rng.integers(0, 2, n) * 2.0
    x2 = x2 + np.floor(x1) % 2
    return np.stack([x1, x2], axis=1) * 2.0


_POINT_SETS: dict[str, Callable[[int, np.random.Generator], np.ndarray]] = {
    "moons": _moons,
    "eight_gaussians": _eight_gaussians,
    "checkerboard": _checkerboard,
}

LABELLED_CENTRES = np.array([[2.0, 2.0], [-2.0, 2.0], [-2.0, -2.0], [2.0, -2.0]])
"""Centres of the four ``labelled_blobs`` classes (label k sits in quadrant k, counter-clockwise)."""


def _labelled_blobs(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    label = rng.integers(0, 4, size=n)
    x = LABELLED_CENTRES[label] + 0.5 * rng.normal(size=(n, 2))
    return label[:, None].astype(np.int32), x.astype(np.float32)


#: share of the 1 797 digit images kept apart as the held-out images (``part="heldout"``)
DIGITS_HELDOUT_SHARE = 0.1


#: the shapes a model may give the digits: a vector, one channel of 8x8 (channels first), or 8x8
DIGITS_SHAPES = ((64,), (1, 8, 8), (8, 8))


def _digits_file() -> tuple[np.ndarray, np.ndarray]:
    """The 1 797 images ``(1797, 64)`` (levels 0..16) and their labels ``(1797,)``."""
    path = Path(__file__).resolve().parent.parent / "datasets" / "digits.npz"
    with np.load(path, allow_pickle=False) as f:
        return f["images"].astype(np.float64), f["labels"].astype(np.int32)


def _digits(n: int, rng: np.random.Generator, part: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """8x8 digits, resampled with replacement and dequantised: (pixel + U(0, 1)) / 17 * 2 - 1.

    ``part``: ``"train"`` or ``"heldout"`` draws only from that fixed share of the images (a
    seeded split of the images themselves, the same for every seed); None from all of them.
    Returns the images ``(n, 64)`` and the index of each one's source image ``(n,)``.
    """
    images = _digits_file()[0]
    order = np.random.default_rng(1797).permutation(len(images))
    k = int(round(DIGITS_HELDOUT_SHARE * len(images)))
    pool = {None: np.arange(len(images)), "heldout": order[:k], "train": order[k:]}[part]
    source = pool[rng.integers(0, len(pool), size=n)]
    picked = images[source]
    return ((picked + rng.uniform(size=picked.shape)) / 17.0 * 2.0 - 1.0).astype(np.float32), source


#: most examples a built-in data set draws (its arrays are made in memory at once)
BUILTIN_LIMIT = 10**7
BUILTIN_NAMES: tuple[str, ...] = (*_POINT_SETS, "markov", "labelled_blobs", "digits")
"""The names :func:`builtin` knows."""


# --------------------------------------------------------------------------- Markov chain


def markov_chain(vocab: int = MARKOV_VOCAB) -> tuple[np.ndarray, np.ndarray]:
    """The fixed random Markov chain behind the ``markov`` set, for a vocabulary size.

    The chain depends only on ``vocab`` (a fixed internal seed): rows of the transition matrix
    are Dirichlet(0.3) draws (low entropy), the initial distribution a Dirichlet(1) draw.

    Parameters
    ----------
    vocab:
        Vocabulary size V >= 2.

    Returns
    -------
    init:
        ``(V,)`` distribution of the first token.
    trans:
        ``(V, V)`` row-stochastic matrix, ``trans[i, j] = p(x_t = j | x_{t-1} = i)``.
    """
    rng = np.random.default_rng([_MARKOV_SEED, vocab])
    init = rng.dirichlet(np.ones(vocab))
    trans = rng.dirichlet(np.full(vocab, _MARKOV_CONCENTRATION), size=vocab)
    return init, trans


def _entropy_rows(p: np.ndarray) -> np.ndarray:
    """Shannon entropy in nats along the last axis, with 0 log 0 = 0."""
    safe = np.where(p > 0, p, 1.0)
    return -np.sum(p * np.log(safe), axis=-1)


def markov_entropy(init: np.ndarray, trans: np.ndarray, length: int) -> float:
    """Exact entropy in nats of a length-``length`` sequence of a first-order Markov chain.

    H(x_0) + sum_{t=1}^{length-1} sum_i p(x_{t-1} = i) H(trans[i]), with the marginals
    p(x_t) propagated exactly.

    Parameters
    ----------
    init:
        ``(V,)`` initial distribution.
    trans:
        ``(V, V)`` row-stochastic transition matrix.
    length:
        Sequence length N >= 1.
    """
    init = np.asarray(init, dtype=np.float64)
    trans = np.asarray(trans, dtype=np.float64)
    row_h = _entropy_rows(trans)
    total = float(_entropy_rows(init))
    marginal = init
    for _ in range(length - 1):
        total += float(marginal @ row_h)
        marginal = marginal @ trans
    return total


def _markov(n: int, length: int, vocab: int, rng: np.random.Generator) -> np.ndarray:
    """``(n, length)`` int32 sequences of the chain ``markov_chain(vocab)``, by inverse CDF."""
    init, trans = markov_chain(vocab)
    cum_init = np.cumsum(init)
    cum_trans = np.cumsum(trans, axis=1)
    u = rng.random((n, length))
    out = np.empty((n, length), dtype=np.int32)
    out[:, 0] = np.searchsorted(cum_init, u[:, 0], side="right")
    for t in range(1, length):
        rows = cum_trans[out[:, t - 1]]
        out[:, t] = np.sum(rows <= u[:, t, None], axis=1)
    # Guard against the last cumulative value rounding below 1.
    return np.minimum(out, vocab - 1)


# --------------------------------------------------------------------------- built-ins


def _markov_shape(shape_hint: Sequence[int] | None) -> tuple[int, int]:
    if shape_hint is None:
        return MARKOV_LENGTH, MARKOV_VOCAB
    hint = tuple(shape_hint)
    if len(hint) != 2 or not all(isinstance(v, (int, np.integer)) for v in hint):
        raise GenDataError(
            f"builtin:markov gives token sequences; expected a shape hint (length, vocab), got {hint}"
        )
    length, vocab = int(hint[0]), int(hint[1])
    if length < 1 or vocab < 2:
        raise GenDataError(
            f"builtin:markov needs length >= 1 and vocabulary >= 2, got length {length}, vocab {vocab}"
        )
    return length, vocab


def builtin(
    name: str,
    n: int,
    seed: int = 0,
    *,
    shape_hint: Sequence[int] | None = None,
    variable: str = "x",
    part: str | None = None,
) -> Dataset:
    """Draw ``n`` examples of a built-in data set.

    Parameters
    ----------
    name:
        One of :data:`BUILTIN_NAMES`.
    n:
        Number of examples (> 0).
    seed:
        Seed of the draw; equal seeds give equal arrays.
    shape_hint:
        The shape the model declares for its data variable. For ``markov``, ``(N, V)`` asks for
        sequences of length N over a vocabulary of V tokens (default ``(32, 8)``). For the 2-D
        sets it must be ``(2,)`` or None.
    variable:
        The key of the array in :attr:`Dataset.arrays`.
    part:
        ``digits`` only: ``"train"`` or ``"heldout"`` draws from disjoint fixed shares of the
        images (None: all; the returned ``groups`` then let a split keep images apart).

    Returns
    -------
    Dataset
        ``arrays[variable]`` is ``(n, 2)`` float32 for the 2-D sets, ``(n, N)`` int32 for
        ``markov``; ``true_nll`` is the exact entropy per sequence (nats) for ``markov``, else None.

    Raises
    ------
    GenDataError
        Unknown name, ``n`` outside ``1..BUILTIN_LIMIT``, or a shape hint the set cannot meet.
    """
    if name not in BUILTIN_NAMES:
        raise GenDataError(
            f"unknown built-in data set '{name}'{did_you_mean(name, BUILTIN_NAMES)} "
            f"(known: {', '.join(BUILTIN_NAMES)})"
        )
    if not 1 <= int(n) <= BUILTIN_LIMIT:
        raise GenDataError(f"builtin:{name} draws from 1 to {BUILTIN_LIMIT:,} examples, got {n}")
    if name == "labelled_blobs":
        return labelled_blobs(n, seed, ("label", variable))
    rng = np.random.default_rng(seed)
    if name == "markov":
        length, vocab = _markov_shape(shape_hint)
        init, trans = markov_chain(vocab)
        x = _markov(int(n), length, vocab, rng)
        return Dataset(name, {variable: x}, markov_entropy(init, trans, length))
    if name == "digits":
        shape = _digits_shape(shape_hint, variable)
        if part not in (None, "train", "heldout"):
            raise GenDataError(f"builtin:digits part must be 'train', 'heldout' or None, got {part!r}")
        images, source = _digits(int(n), rng, part)
        return Dataset(name, {variable: images.reshape(-1, *shape)}, groups=source)
    if shape_hint is not None and tuple(shape_hint) != (2,):
        raise GenDataError(
            f"builtin:{name} gives 2-D points (shape (2,)), but the model's data variable "
            f"'{variable}' has shape {tuple(shape_hint)}"
        )
    return Dataset(name, {variable: _POINT_SETS[name](int(n), rng).astype(np.float32)})


def _digits_shape(shape_hint: Sequence[int] | None, variable: str) -> tuple[int, ...]:
    """The digits' shape for a model's image variable (``(64,)`` when it does not say)."""
    if shape_hint is None:
        return (64,)
    if tuple(shape_hint) not in DIGITS_SHAPES:
        raise GenDataError(f"builtin:digits gives 8x8 images as real[64], real[1, 8, 8] or real[8, 8], but the "
                           f"model's data variable '{variable}' has shape {tuple(shape_hint)}")
    return tuple(shape_hint)


def labelled_digits(n: int, seed: int, variables: Sequence[str], shape_hint: Sequence[int] | None = None,
                    part: str | None = None) -> Dataset:
    """Digits with their labels: ``variables`` names the label (``token[1] of 10``, declared first)
    and the image (``shape_hint``: one of :data:`DIGITS_SHAPES`); ``part`` as for :func:`builtin`.
    The groups are the source images."""
    if len(variables) != 2:
        raise GenDataError(f"builtin:digits gives a label and an image, but the model has data variables "
                           f"{quote(list(variables))}")
    shape = _digits_shape(shape_hint, variables[1])
    images, source = _digits(int(n), np.random.default_rng(seed), part)
    labels = _digits_file()[1][source][:, None]
    return Dataset("digits", {variables[0]: labels, variables[1]: images.reshape(-1, *shape)}, groups=source)


def labelled_blobs(n: int, seed: int, variables: Sequence[str]) -> Dataset:
    """Four Gaussian blobs (sd 0.5) at :data:`LABELLED_CENTRES` with their labels.

    ``variables`` names the label (``token[1] of 4``) and the point (``real[2]``), in the
    model's order of declaration: the first is the label.
    """
    if len(variables) != 2:
        raise GenDataError(f"builtin:labelled_blobs gives a label and a 2-D point, but the model has data "
                           f"variables {quote(list(variables))}")
    label, x = _labelled_blobs(int(n), np.random.default_rng(seed))
    return Dataset("labelled_blobs", {variables[0]: label, variables[1]: x})
