"""JAX's persistent compilation cache, on by default in a user cache folder.

A compiled XLA program is stored on disk keyed by its HLO, the devices and the JAX version, so a
new process that builds the same program (the same model, data shapes and settings) loads it
instead of compiling it again: the second ``gendsl infer`` of a model starts sampling in a
fraction of the first one's time.

The folder is ``$GENDSL_COMPILE_CACHE`` when that is a path, else
``$XDG_CACHE_HOME/gendsl/jax`` (``~/.cache/gendsl/jax``); ``GENDSL_COMPILE_CACHE=0`` (or ``off``)
turns the cache off, as does :func:`configure` with None. A cache folder the user gave JAX
(``JAX_COMPILATION_CACHE_DIR``) is left as it is. The cache is the one thing gendsl writes outside
a run's ``--out``: it holds compiled programs only, never data or parameters, and JAX keeps it
under :data:`MAX_BYTES` by evicting the least recently used entries.
"""

from __future__ import annotations

import os
from pathlib import Path

import jax
from jax.experimental.compilation_cache import compilation_cache

__all__ = ["ENV", "MAX_BYTES", "MIN_COMPILE_SECONDS", "default_folder", "configure", "enable_default", "folder"]

#: the environment variable that moves (a path) or turns off (``0``, ``off``) the cache
ENV = "GENDSL_COMPILE_CACHE"
#: the cache's size limit on disk
MAX_BYTES = 2 * 1024**3
#: programs that compile faster than this are not stored (reading them back would not pay)
MIN_COMPILE_SECONDS = 0.2
_OFF = ("0", "off", "false", "no")


def default_folder() -> Path:
    """``$XDG_CACHE_HOME/gendsl/jax``, or ``~/.cache/gendsl/jax``."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "gendsl" / "jax"


def folder() -> Path | None:
    """The folder JAX's persistent cache uses now (None: off)."""
    where = jax.config.jax_compilation_cache_dir
    return Path(where) if where else None


def configure(where: str | Path | None) -> Path | None:
    """Use ``where`` as the persistent compilation cache (created if missing), or turn the cache
    off (None). A folder that cannot be created or written turns it off. Returns the folder in use."""
    if where is not None:
        where = Path(where).expanduser()
        try:
            where.mkdir(parents=True, exist_ok=True, mode=0o700)
            writable = os.access(where, os.W_OK | os.X_OK)
        except OSError:
            writable = False
        where = where if writable else None
    compilation_cache.reset_cache()  # JAX opens its cache once: forget the one it may have opened
    jax.config.update("jax_compilation_cache_dir", None if where is None else str(where))
    if where is not None:
        jax.config.update("jax_persistent_cache_min_compile_time_secs", MIN_COMPILE_SECONDS)
        jax.config.update("jax_compilation_cache_max_size", MAX_BYTES)
    return where


def enable_default() -> Path | None:
    """Turn the cache on as :data:`ENV` says (at ``import gendsl``), unless JAX has a folder already."""
    if folder() is not None:
        return folder()
    setting = os.environ.get(ENV)
    if setting is not None and setting.strip().lower() in _OFF:
        return None
    return configure(setting or default_folder())
