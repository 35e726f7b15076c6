"""Data sets and data loading.

Built-in sets (seeded, any size, every example drawn i.i.d. from a fixed distribution, so a
second draw is an independent sample of the same law):

- ``moons``, ``eight_gaussians``, ``checkerboard``: 2-D points, as in the FFJORD / flow-matching
  toy benchmarks, with values within about [-4, 4].
- ``digits``: scikit-learn's 8x8 handwritten digits as ``real[64]``, dequantised to (-1, 1).
- ``labelled_blobs``: a label (``token[1] of 4``) and a 2-D point from that label's blob.
- ``markov``: token sequences from a fixed random first-order Markov chain, whose exact entropy
  per sequence is known and reported as :attr:`Dataset.true_nll`.

:func:`load_source` reads the ``--data SRC`` of the command line: ``builtin:NAME``, a ``.npy``
file (one data variable), or an ``.npz`` / ``.json`` file keyed by variable name.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np

from gendsl.errors import GenDataError, did_you_mean

__all__ = [
    "Dataset",
    "BUILTIN_NAMES",
    "N_DEFAULT",
    "builtin",
    "markov_chain",
    "markov_entropy",
    "labelled_blobs",
    "LABELLED_CENTRES",
    "load_source",
    "split_heldout",
]

N_DEFAULT = 10_000
"""Number of examples drawn from a built-in set when the caller does not say."""

TRUE_NLL_KEY = "true_nll"
MARKOV_LENGTH = 32
MARKOV_VOCAB = 8
_MARKOV_SEED = 20240611
_MARKOV_CONCENTRATION = 0.3


@dataclass(frozen=True)
class Dataset:
    """A data set: arrays keyed by variable name.

    Attributes
    ----------
    name:
        Where it came from (``"moons"``, a file path...).
    arrays:
        Variable name -> array; per-example variables have a leading example axis ``(n, ...)``,
        scalars (such as a size ``J``) are 0-d arrays.
    true_nll:
        The exact entropy of the data distribution in nats per example when known, else None.
    """

    name: str
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    true_nll: float | None = None


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


def _digits(n: int, rng: np.random.Generator) -> np.ndarray:
    """8x8 digits, resampled with replacement and dequantised: (pixel + U(0, 1)) / 17 * 2 - 1."""
    path = Path(__file__).resolve().parent / "datasets" / "digits.npz"
    with np.load(path, allow_pickle=False) as f:
        images = f["images"].astype(np.float64)
    picked = images[rng.integers(0, len(images), size=n)]
    return ((picked + rng.uniform(size=picked.shape)) / 17.0 * 2.0 - 1.0).astype(np.float32)


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

    Returns
    -------
    Dataset
        ``arrays[variable]`` is ``(n, 2)`` float32 for the 2-D sets, ``(n, N)`` int32 for
        ``markov``; ``true_nll`` is the exact entropy per sequence (nats) for ``markov``, else None.

    Raises
    ------
    GenDataError
        Unknown name, non-positive ``n``, or a shape hint the set cannot meet.
    """
    if name not in BUILTIN_NAMES:
        raise GenDataError(
            f"unknown built-in data set '{name}'{did_you_mean(name, BUILTIN_NAMES)} "
            f"(known: {', '.join(BUILTIN_NAMES)})"
        )
    if int(n) < 1:
        raise GenDataError(f"builtin:{name} needs a positive number of examples, got {n}")
    if name == "labelled_blobs":
        return labelled_blobs(n, seed, ("label", variable))
    rng = np.random.default_rng(seed)
    if name == "markov":
        length, vocab = _markov_shape(shape_hint)
        init, trans = markov_chain(vocab)
        x = _markov(int(n), length, vocab, rng)
        return Dataset(name, {variable: x}, markov_entropy(init, trans, length))
    if name == "digits":
        if shape_hint is not None and tuple(shape_hint) != (64,):
            raise GenDataError(f"builtin:digits gives 8x8 images as real[64], but the model's data variable "
                               f"'{variable}' has shape {tuple(shape_hint)}")
        return Dataset(name, {variable: _digits(int(n), rng)})
    if shape_hint is not None and tuple(shape_hint) != (2,):
        raise GenDataError(
            f"builtin:{name} gives 2-D points (shape (2,)), but the model's data variable "
            f"'{variable}' has shape {tuple(shape_hint)}"
        )
    return Dataset(name, {variable: _POINT_SETS[name](int(n), rng).astype(np.float32)})


def labelled_blobs(n: int, seed: int, variables: Sequence[str]) -> Dataset:
    """Four Gaussian blobs (sd 0.5) at :data:`LABELLED_CENTRES` with their labels.

    ``variables`` names the label (``token[1] of 4``) and the point (``real[2]``), in the
    model's order of declaration: the first is the label.
    """
    if len(variables) != 2:
        raise GenDataError(f"builtin:labelled_blobs gives a label and a 2-D point, but the model has data "
                           f"variables {_quote(list(variables))}")
    label, x = _labelled_blobs(int(n), np.random.default_rng(seed))
    return Dataset("labelled_blobs", {variables[0]: label, variables[1]: x})


# --------------------------------------------------------------------------- files


def _quote(names: Sequence[str]) -> str:
    return ", ".join(f"'{v}'" for v in names) if names else "none"


def _check_keys(path: Path, found: Sequence[str], variables: Sequence[str]) -> None:
    """Raise a GenDataError naming the missing and the unexpected keys, if any."""
    missing = [v for v in variables if v not in found]
    extra = [k for k in found if k not in variables]
    if not missing and not extra:
        return
    parts = []
    if missing:
        parts.append(f"lacks variable(s) {_quote(missing)}")
    if extra:
        hint = did_you_mean(extra[0], missing) if missing else ""
        parts.append(f"has variable(s) {_quote(extra)} the model does not declare{hint}")
    raise GenDataError(
        f"data file '{path}' {' and '.join(parts)} (the model expects: {_quote(list(variables))})"
    )


def _true_nll(path: Path, value: object) -> float:
    arr = np.asarray(value)
    if arr.ndim != 0 or arr.dtype.kind not in "iuf" or not np.isfinite(arr):
        raise GenDataError(f"data file '{path}': '{TRUE_NLL_KEY}' must be a finite number")
    return float(arr)


def _json_array(path: Path, key: str, value: object) -> np.ndarray:
    try:
        arr = np.asarray(value)
    except ValueError as exc:  # ragged nested lists
        raise GenDataError(f"data file '{path}': variable '{key}' is not a rectangular array") from exc
    if arr.dtype.kind not in "biuf":
        raise GenDataError(
            f"data file '{path}': variable '{key}' must hold numbers, got {type(value).__name__}"
        )
    return arr


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


def _read_json(path: Path) -> dict[str, np.ndarray]:
    raw = json.loads(path.read_text())
    if not isinstance(raw, dict):
        raise GenDataError(f"data file '{path}' must hold a JSON object keyed by variable name")
    return {k: _json_array(path, k, v) for k, v in raw.items()}


def load_source(
    src: str,
    variables: Sequence[str],
    n_default: int = N_DEFAULT,
    *,
    seed: int = 0,
    shape_hint: Sequence[int] | None = None,
) -> Dataset:
    """Read the data named by a command-line ``--data SRC``.

    Parameters
    ----------
    src:
        ``builtin:NAME``; a ``.npy`` file (only when the model has exactly one data variable);
        an ``.npz`` or ``.json`` file keyed by variable name. An ``.npz`` / ``.json`` may also hold
        a scalar ``true_nll`` (the data's exact entropy per example, in nats), which becomes
        :attr:`Dataset.true_nll` rather than a variable (unless the model has a variable of
        that name). JSON lists become arrays, integers stay integers, scalars become 0-d arrays.
    variables:
        The data variables the model expects.
    n_default:
        Number of examples drawn from a built-in set.
    seed:
        Seed of a built-in draw.
    shape_hint:
        Declared shape of the single data variable, passed to :func:`builtin`.

    Returns
    -------
    Dataset
        With exactly the keys ``variables``.

    Raises
    ------
    GenDataError
        Unknown built-in, missing file, unsupported suffix, unreadable file, or missing / extra
        variables (named in the message).
    """
    variables = list(variables)
    if src.startswith("builtin:"):
        name = src[len("builtin:"):].strip()
        if name == "labelled_blobs":
            return labelled_blobs(n_default, seed, variables)
        if len(variables) != 1:
            raise GenDataError(
                f"builtin:{name} gives one array, but the model has data variables {_quote(variables)}; "
                f"use an .npz or .json file keyed by variable name"
            )
        return builtin(name, n_default, seed, shape_hint=shape_hint, variable=variables[0])

    path = Path(src)
    suffix = path.suffix.lower()
    if suffix not in (".npy", ".npz", ".json"):
        raise GenDataError(
            f"cannot read data source '{src}': expected builtin:NAME "
            f"(one of {', '.join(BUILTIN_NAMES)}), a .npy, .npz or .json file"
        )
    if not path.is_file():
        raise GenDataError(f"data file '{path}' does not exist")
    if suffix == ".npy" and len(variables) != 1:
        raise GenDataError(
            f"data file '{path}' is a single array, but the model has data variables "
            f"{_quote(variables)}; use an .npz or .json file keyed by variable name"
        )
    try:
        if suffix == ".npy":
            arrays = {variables[0]: np.load(path, allow_pickle=False, mmap_mode="r")}  # rows read on use
        elif suffix == ".npz":
            arrays = _read_npz(path)
        else:
            arrays = _read_json(path)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:  # corrupt file, pickled objects, bad JSON
        raise GenDataError(f"cannot read data file '{path}': {exc}") from exc
    true_nll = None if TRUE_NLL_KEY in variables else arrays.pop(TRUE_NLL_KEY, None)
    _check_keys(path, list(arrays), variables)
    return Dataset(
        str(path),
        {v: arrays[v] for v in variables},
        None if true_nll is None else _true_nll(path, true_nll),
    )


# --------------------------------------------------------------------------- held-out split


def split_heldout(
    arrays: Mapping[str, np.ndarray], fraction: float = 0.1, seed: int = 0
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Split per-example variables into a training and a held-out part.

    Every array with at least one axis is per-example (leading axis n, the same n for all) and
    is permuted by the same seeded permutation; 0-d arrays (scalars such as a size ``J``) are
    copied to both parts.

    Parameters
    ----------
    arrays:
        Variable name -> array ``(n, ...)`` or scalar.
    fraction:
        Share of the examples held out, in (0, 1); at least one example goes to each part.
    seed:
        Seed of the permutation.

    Returns
    -------
    train, heldout:
        Dicts with the same keys: ``(n - k, ...)`` and ``(k, ...)`` with k = round(fraction n).

    Raises
    ------
    GenDataError
        Per-example variables of different lengths, or fewer than two examples.
    """
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction must lie in (0, 1), got {fraction}")
    arrays = {k: np.asarray(v) for k, v in arrays.items()}
    lengths = {k: v.shape[0] for k, v in arrays.items() if v.ndim > 0}
    if len(set(lengths.values())) > 1:
        listing = ", ".join(f"'{k}': {n}" for k, n in lengths.items())
        raise GenDataError(f"data variables have different numbers of examples ({listing})")
    n = next(iter(lengths.values()), 0)
    if n < 2:
        raise GenDataError(f"cannot hold out data from {n} example(s); need at least 2")
    k = min(max(int(round(fraction * n)), 1), n - 1)
    perm = np.random.default_rng(seed).permutation(n)
    held_idx, train_idx = perm[:k], perm[k:]
    train = {name: v[train_idx] if v.ndim > 0 else v for name, v in arrays.items()}
    heldout = {name: v[held_idx] if v.ndim > 0 else v for name, v in arrays.items()}
    return train, heldout
