"""Parameters on disk without pickle: one ``.npz`` of arrays keyed by their PyTree path, plus a
``meta.json``; written atomically (temporary file, then rename)."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import jax
import numpy as np

from gendsl.errors import GenDataError

__all__ = ["save", "load", "read_meta", "params_folder", "atomic_write_bytes", "atomic_write_text"]

_ARRAYS, _META = "params.npz", "meta.json"


def _umask() -> int:
    """The process's file-creation mask (read by setting it, then restoring it)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # as open() would create it, not mkstemp's 0600
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def _flat(tree) -> dict[str, np.ndarray]:
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    return {jax.tree_util.keystr(p): np.asarray(v) for p, v in leaves}


def params_folder(path: str | Path) -> Path:
    """The folder holding ``params.npz``: ``path`` itself or ``path/params`` (a ``gendsl fit`` run)."""
    path = Path(path)
    for cand in (path, path / "params"):
        if (cand / _ARRAYS).is_file():
            return cand
    raise GenDataError(f"no parameters found at {path} (expected {path / _ARRAYS} or {path / 'params' / _ARRAYS})")


def save(params: Any, path: str | Path, meta: dict) -> Path:
    """Write ``params`` under the folder ``path``; returns the folder."""
    import io

    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    np.savez(buf, **_flat(params))
    atomic_write_bytes(folder / _ARRAYS, buf.getvalue())
    atomic_write_text(folder / _META, json.dumps(meta, indent=2, sort_keys=True))
    return folder


def read_meta(path: str | Path) -> dict:
    folder = params_folder(path)
    try:
        return json.loads((folder / _META).read_text())
    except (OSError, ValueError):
        return {}


def load(path: str | Path, template: Any) -> Any:
    """Read parameters into the structure of ``template`` (checking every name and shape)."""
    folder = params_folder(path)
    with np.load(folder / _ARRAYS, allow_pickle=False) as f:
        stored = {k: f[k] for k in f.files}
    leaves, treedef = jax.tree_util.tree_flatten_with_path(template)
    out = []
    for p, leaf in leaves:
        k = jax.tree_util.keystr(p)
        if k not in stored:
            raise GenDataError(f"{folder / _ARRAYS} has no parameter {k}: it was written for another model")
        if stored[k].shape != np.shape(leaf):
            raise GenDataError(f"parameter {k} in {folder / _ARRAYS} has shape {list(stored[k].shape)}, "
                               f"the model expects {list(np.shape(leaf))}")
        out.append(jax.numpy.asarray(stored[k], dtype=leaf.dtype))
    extra = set(stored) - {jax.tree_util.keystr(p) for p, _ in leaves}
    if extra:
        raise GenDataError(f"{folder / _ARRAYS} holds parameters this model does not have ({sorted(extra)[0]}, ...)")
    return jax.tree_util.tree_unflatten(treedef, out)
