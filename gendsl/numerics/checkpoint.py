"""Training checkpoints: the whole :class:`~gendsl.numerics.train.TrainState`, the losses so far
and a small record, in ONE ``.npz`` written atomically (temporary file, then rename), so a run
killed at any moment resumes from the last complete checkpoint. No pickle."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from gendsl.errors import GenDataError
from gendsl.numerics.confined import atomic_write_bytes, check_npz, output_root

__all__ = ["CHECKPOINT", "save_checkpoint", "load_checkpoint", "has_checkpoint", "data_digest", "differences"]

CHECKPOINT = "checkpoint.npz"


def _is_key(x) -> bool:
    return isinstance(x, jax.Array) and jnp.issubdtype(x.dtype, jax.dtypes.prng_key)


def data_digest(arrays: dict) -> str:
    """A SHA-256 of named arrays (names, dtypes, shapes and bytes): equal data, equal digest."""
    digest = hashlib.sha256()
    for name in sorted(arrays):
        value = np.ascontiguousarray(np.asarray(arrays[name]))
        digest.update(f"{name}|{value.dtype.str}|{value.shape}|".encode())
        digest.update(value.tobytes())
    return digest.hexdigest()


def differences(saved: dict, record: dict) -> list[str]:
    """What differs between a checkpoint's record and this run's, as ``"name: saved -> now"``."""
    def shown(value):
        text = json.dumps(value, sort_keys=True)
        return text if len(text) <= 40 else text[:16] + "..."

    return [f"{k}: {shown(saved.get(k))} -> {shown(v)}" for k, v in record.items() if saved.get(k) != v]


def has_checkpoint(folder: str | Path) -> bool:
    return (Path(folder) / CHECKPOINT).is_file()


def save_checkpoint(folder: str | Path, state: Any, losses: np.ndarray, record: dict) -> Path:
    """Write ``state`` (any PyTree, PRNG keys included), ``losses`` and ``record`` to ``folder``."""
    leaves = jax.tree_util.tree_leaves(state)
    arrays = {f"leaf_{i:05d}": np.asarray(jax.random.key_data(x) if _is_key(x) else x) for i, x in enumerate(leaves)}
    arrays["__losses__"] = np.asarray(losses, dtype=np.float32)
    arrays["__record__"] = np.frombuffer(json.dumps(record, sort_keys=True).encode(), dtype=np.uint8)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    path = output_root(folder, "the checkpoint folder") / CHECKPOINT
    atomic_write_bytes(path, buf.getvalue())
    return path


def load_checkpoint(folder: str | Path, template: Any) -> tuple[Any, np.ndarray, dict]:
    """Read a checkpoint into the structure of ``template``: returns ``(state, losses, record)``."""
    path = Path(folder) / CHECKPOINT
    try:
        with np.load(check_npz(path, "the checkpoint"), allow_pickle=False) as f:
            stored = {k: f[k] for k in f.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise GenDataError(f"cannot read the checkpoint {path}: {err}") from None
    leaves, treedef = jax.tree_util.tree_flatten(template)
    names = [f"leaf_{i:05d}" for i in range(len(leaves))]
    if sorted(k for k in stored if k.startswith("leaf_")) != names:
        raise GenDataError(f"the checkpoint {path} was written for another model or configuration")
    try:
        record = json.loads(bytes(stored["__record__"]).decode())
        losses = np.asarray(stored["__losses__"], dtype=np.float32)
    except (KeyError, ValueError, TypeError, RecursionError):
        record, losses = None, None
    if not isinstance(record, dict) or losses is None or losses.ndim != 1:
        raise GenDataError(f"the checkpoint {path} is damaged (its record or its losses are missing or unreadable); "
                           f"start afresh (--force)")
    out = []
    for name, leaf in zip(names, leaves):
        value = stored[name]
        expected = jax.random.key_data(leaf) if _is_key(leaf) else np.asarray(leaf)
        if value.shape != expected.shape or value.dtype.kind not in "biuf":
            raise GenDataError(f"the checkpoint {path} does not match this model (a state array has shape "
                               f"{list(value.shape)} and dtype {value.dtype}, expected {list(expected.shape)} and "
                               f"{expected.dtype})")
        if _is_key(leaf):
            out.append(jax.random.wrap_key_data(jnp.asarray(value, dtype=expected.dtype), impl=jax.random.key_impl(leaf)))
        else:
            out.append(jnp.asarray(value, dtype=expected.dtype))
    return jax.tree_util.tree_unflatten(treedef, out), losses, record
