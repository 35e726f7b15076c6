"""Reading ``--data SRC``: a built-in set, a ``.npy`` file (one data variable), or an ``.npz`` /
``.json`` file keyed by variable name; and setting examples aside for evaluation."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from gendsl.data.dataset import Dataset
from gendsl.data.sets import BUILTIN_NAMES, N_DEFAULT, builtin, labelled_blobs, labelled_digits, quote
from gendsl.errors import GenDataError, did_you_mean
from gendsl.numerics.confined import check_npz, read_text, readable

__all__ = ["TRUE_NLL_KEY", "load_source", "split_heldout"]

TRUE_NLL_KEY = "true_nll"
"""Key of an optional data-file entry: the exact entropy of the data's law (nats per example)."""


def _check_keys(path: Path, found: Sequence[str], variables: Sequence[str]) -> None:
    """Raise a GenDataError naming the missing and the unexpected keys, if any."""
    missing = [v for v in variables if v not in found]
    extra = [k for k in found if k not in variables]
    if not missing and not extra:
        return
    parts = []
    if missing:
        parts.append(f"lacks variable(s) {quote(missing)}")
    if extra:
        hint = did_you_mean(extra[0], missing) if missing else ""
        parts.append(f"has variable(s) {quote(extra)} the model does not declare{hint}")
    raise GenDataError(
        f"data file '{path}' {' and '.join(parts)} (the model expects: {quote(list(variables))})"
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
    with np.load(check_npz(path, "the data file"), allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


def _read_json(path: Path) -> dict[str, np.ndarray]:
    try:
        raw = json.loads(read_text(path, "the data file"))
    except RecursionError:
        raise GenDataError(f"data file '{path}' nests its JSON too deeply") from None
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
        ``builtin:NAME`` (``labelled_blobs``, and ``digits`` for two variables, give a label and a
        point or image); a ``.npy`` file (only when the model has exactly one data variable);
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
        Declared shape of the single data variable (of a labelled set's second variable), passed
        to :func:`builtin` (:func:`labelled_digits`).

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
        if name == "digits" and len(variables) == 2:
            return labelled_digits(n_default, seed, variables, shape_hint)
        if len(variables) != 1:
            raise GenDataError(
                f"builtin:{name} gives one array, but the model has data variables {quote(variables)}; "
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
            f"{quote(variables)}; use an .npz or .json file keyed by variable name"
        )
    try:
        if suffix == ".npy":
            arrays = {variables[0]: np.load(readable(path, "the data file"), allow_pickle=False, mmap_mode="r")}
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
    arrays: Mapping[str, np.ndarray], fraction: float = 0.1, seed: int = 0, groups: np.ndarray | None = None
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
    groups:
        ``(n,)`` group of each example (:attr:`Dataset.groups`), or None. With groups, whole
        groups are held out (about ``fraction`` of them), so no group is on both sides.

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
    rng = np.random.default_rng(seed)
    if groups is not None:
        names = np.unique(groups)
        if len(names) < 2:
            raise GenDataError(f"cannot hold out whole groups from {len(names)} group(s); need at least 2")
        k = min(max(int(round(fraction * len(names))), 1), len(names) - 1)
        held = np.isin(groups, rng.permutation(names)[:k])
        held_idx, train_idx = np.flatnonzero(held), np.flatnonzero(~held)
    else:
        k = min(max(int(round(fraction * n)), 1), n - 1)
        perm = rng.permutation(n)
        held_idx, train_idx = perm[:k], perm[k:]
    train = {name: v[train_idx] if v.ndim > 0 else v for name, v in arrays.items()}
    heldout = {name: v[held_idx] if v.ndim > 0 else v for name, v in arrays.items()}
    return train, heldout
