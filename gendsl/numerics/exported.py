"""Traced programs kept on disk, so a new process skips Python tracing as well as XLA compilation.

JAX's persistent cache (:mod:`gendsl.numerics.compile_cache`) stores compiled XLA programs, but
finding one needs the program's HLO, and producing that means tracing the Python code again:
for a NUTS sampler, most of a warm start. :func:`compiled` keeps the traced program itself, as a
``jax.export`` serialisation, in the cache folder's ``traced/`` under a digest of everything the
trace depends on: the caller's description of the program (for a posterior sampler: the
model's statements, its dimensions, the kernel and the counts), the shapes and dtypes of the
arguments, the precision, the platform, and the versions of gendsl's own source and of the
libraries that traced it. A file that does not read back is traced again and replaced.

Only programs without host callbacks can be exported (``jax.export`` does not serialise them):
callers pass ``store=False`` for those, and for programs whose trace depends on anything the
digest does not see.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any, Callable

import jax

from gendsl.numerics import compile_cache

__all__ = ["LIBRARIES", "digest", "compiled"]

#: the libraries whose code a gendsl program's trace runs
LIBRARIES = ("jax", "jaxlib", "blackjax", "numpyro", "equinox", "diffrax", "optax")
_PACKAGE = Path(__file__).resolve().parents[1]


@lru_cache(maxsize=1)
def _stamp() -> str:
    """Library versions and a hash of gendsl's source files: a trace is reused only by the same code."""
    h = hashlib.sha256()
    for name in LIBRARIES:
        try:
            h.update(f"{name}={metadata.version(name)};".encode())
        except metadata.PackageNotFoundError:
            h.update(f"{name}=none;".encode())
    for path in sorted(_PACKAGE.rglob("*.py")):
        h.update(path.relative_to(_PACKAGE).as_posix().encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def _abstract(args) -> str:
    leaves, structure = jax.tree_util.tree_flatten(args)
    return repr((structure, [(tuple(jax.numpy.shape(x)), str(jax.numpy.result_type(x))) for x in leaves]))


def digest(description: Any, args) -> str:
    """The store's key for a program described by ``description`` (a ``repr``-able value that
    determines its trace) called on ``args``."""
    parts = (_stamp(), repr(description), _abstract(args), bool(jax.config.jax_enable_x64),
             jax.default_backend(), jax.device_count())
    return hashlib.sha256(repr(parts).encode()).hexdigest()


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except OSError:
        Path(tmp).unlink(missing_ok=True)


def compiled(name: str, description: Any, fn: Callable, args: tuple, store: bool = True):
    """``jax.jit(fn)`` compiled for ``args``, its trace read from the store when it is there.

    Parameters
    ----------
    name:
        What the program is (the file name's prefix).
    description:
        Everything besides the arguments' shapes that ``fn``'s trace depends on (``repr``-able).
    fn:
        A pure function of arrays, returning arrays in dicts, lists or tuples (no custom pytrees).
    store:
        False for programs that cannot or must not be stored: traced and compiled as usual.

    Returns
    -------
    A compiled callable of ``*args`` (its outputs as ``fn``'s).
    """
    folder = compile_cache.folder()
    if not store or folder is None:
        return jax.jit(fn).lower(*args).compile()
    path = folder / "traced" / f"{name}-{digest(description, args)}.bin"
    if path.is_file() and not path.is_symlink():
        try:
            program = jax.export.deserialize(bytearray(path.read_bytes()))
            return jax.jit(program.call).lower(*args).compile()
        except Exception:  # noqa: BLE001 - a stale or damaged file: trace again and replace it
            path.unlink(missing_ok=True)
    try:
        program = jax.export.export(jax.jit(fn))(*args)
        data = program.serialize()
    except Exception:  # noqa: BLE001 - a program jax.export cannot serialise: compile it as usual
        return jax.jit(fn).lower(*args).compile()
    _write(path, bytes(data))
    return jax.jit(program.call).lower(*args).compile()
