"""Parameters on disk without pickle: one ``.npz`` of arrays keyed by their PyTree path, plus a
``meta.json``; written atomically and only inside the given folder (:mod:`.confined`)."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Any

import jax
import numpy as np

from gendsl.errors import GenDataError
from gendsl.numerics.confined import atomic_write_bytes, atomic_write_text, check_npz, output_root, read_text

__all__ = ["save", "load", "read_meta", "params_folder"]

_ARRAYS, _META = "params.npz", "meta.json"


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
    """Write ``params`` under the folder ``path`` (made if missing, links in it refused); returns it."""
    folder = output_root(path, "the parameter folder")
    buf = io.BytesIO()
    np.savez(buf, **_flat(params))
    atomic_write_bytes(folder / _ARRAYS, buf.getvalue())
    atomic_write_text(folder / _META, json.dumps(meta, indent=2, sort_keys=True))
    return folder


def read_meta(path: str | Path) -> dict:
    folder = params_folder(path)
    try:
        return json.loads(read_text(folder / _META, "the parameters' record"))
    except (GenDataError, ValueError, RecursionError):  # no record (an old folder): no fingerprints to check
        return {}


def load(path: str | Path, template: Any, fingerprints: dict[str, str] | None = None, owner: str = "the model") -> Any:
    """Read parameters into the structure of ``template`` (a dict by node name), checking every
    name and shape.

    When the file records each node's fingerprint (``meta.json``'s ``nodes``, written by
    :func:`save`), nodes are taken by name: the file may hold nodes ``template`` lacks, and a node
    whose stored fingerprint differs from ``fingerprints[name]`` is refused (another mechanism,
    network or option, even with equal shapes). ``owner`` names the model in messages.
    """
    folder = params_folder(path)
    stored_prints = read_meta(path).get("nodes")
    other_nodes = isinstance(stored_prints, dict)
    for name, mine in (fingerprints or {}).items() if other_nodes else ():
        if name in template and stored_prints.get(name) != mine:
            found = "no parameters for it" if name not in stored_prints else f"parameters for '{stored_prints[name]}'"
            raise GenDataError(f"the parameters at {path} do not belong to '{name}' of {owner}: the file has {found}, "
                               f"the model needs '{mine}'")
    leaves, treedef = jax.tree_util.tree_flatten_with_path(template)
    wanted = {jax.tree_util.keystr(p): leaf for p, leaf in leaves}
    try:
        with np.load(check_npz(folder / _ARRAYS, "the parameter file"), allow_pickle=False) as f:
            names = list(f.files)
            if other_nodes:
                prefixes = tuple(jax.tree_util.keystr((jax.tree_util.DictKey(name),)) for name in template)
                names = [k for k in names if k.startswith(prefixes)]
            extra = set(names) - set(wanted)
            if extra:
                raise GenDataError(f"{folder / _ARRAYS} holds parameters this model does not have "
                                   f"({sorted(extra)[0]}, ...)")
            stored = {}
            for k, leaf in wanted.items():  # names and shapes from the headers, before any member is read
                if k not in names:
                    raise GenDataError(f"{folder / _ARRAYS} has no parameter {k}: it was written for another model")
                shape = _member_shape(f, k)
                if shape != np.shape(leaf):
                    raise GenDataError(f"parameter {k} in {folder / _ARRAYS} has shape {list(shape)}, "
                                       f"the model expects {list(np.shape(leaf))}")
                stored[k] = f[k]
                if stored[k].dtype.kind not in "biuf" or (stored[k].dtype.kind == "f" and not np.isfinite(stored[k]).all()):
                    raise GenDataError(f"parameter {k} in {folder / _ARRAYS} is damaged: it holds "
                                       f"{'non-finite values' if stored[k].dtype.kind == 'f' else stored[k].dtype}, "
                                       f"not finite numbers")
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise GenDataError(f"cannot read the parameters {folder / _ARRAYS}: {err}") from None
    out = [jax.numpy.asarray(stored[jax.tree_util.keystr(p)], dtype=leaf.dtype) for p, leaf in leaves]
    return jax.tree_util.tree_unflatten(treedef, out)


def _member_shape(archive, name: str) -> tuple[int, ...]:
    """The shape an ``.npz`` member declares in its header (nothing is decompressed beyond it)."""
    with archive.zip.open(f"{name}.npy") as member:
        version = np.lib.format.read_magic(member)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _, _ = read_header(member)
    return tuple(shape)
