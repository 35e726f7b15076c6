"""Writing inside one output folder only: no write through a link, no path that leaves it.

Every file gendsl writes (run folders, parameters, checkpoints, pictures, draws) goes through
:func:`atomic_write_bytes` into a folder made by :func:`confined_dir`:

    out = output_root("runs/moons")                 # the --out folder, made if missing
    params = confined_dir(out, "params")            # out/params, never a link out of it
    atomic_write_bytes(params / "params.npz", data)

``confined_dir`` refuses any component below the root that is a symbolic link, or a file where
a folder should be; ``atomic_write_bytes`` refuses a link or a folder at the target, writes a
temporary file beside it (created exclusively, never following a link), syncs it and renames it
over the target, so a reader sees the old file or the new one and never half of one. Links
above the root (``/tmp`` on macOS, a symlinked home) are the user's own choice and are allowed.
"""

from __future__ import annotations

import os
from pathlib import Path

from gendsl.errors import GenDataError

__all__ = ["output_root", "confined_dir", "atomic_write_bytes", "atomic_write_text"]


def _umask() -> int:
    """The process's file-creation mask (read by setting it, then restoring it)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _refuse_link(path: Path, what: str) -> None:
    if path.is_symlink():
        raise GenDataError(f"refusing to write {what} {path}: it is a symbolic link (to {os.readlink(path)}); "
                           "gendsl writes only inside the output folder: remove the link or choose another --out")


def output_root(path: str | Path, what: str = "the output folder") -> Path:
    """The folder ``path``, made if missing; an empty path or an existing non-folder is refused."""
    if str(path).strip() == "":
        raise GenDataError(f"{what} is empty: give a folder name (e.g. --out runs/first)")
    root = Path(path)
    if root.exists() and not root.is_dir():
        raise GenDataError(f"{what} {root} exists and is not a folder")
    for parent in root.parents:
        if parent.exists() and not parent.is_dir():
            raise GenDataError(f"{what} {root} is under {parent}, which is a file, not a folder")
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise GenDataError(f"cannot make {what} {root}: {err.strerror}") from None
    return root


def confined_dir(root: Path, *parts: str) -> Path:
    """``root / parts...``, each component checked (no link, no ``..``) and made if missing."""
    path = Path(root)
    for part in parts:
        if part in ("", ".", "..") or "/" in part or "\\" in part:
            raise GenDataError(f"invalid folder name {part!r} inside {root}")
        path = path / part
        _refuse_link(path, "into the folder")
        if path.exists() and not path.is_dir():
            raise GenDataError(f"cannot write into {path}: it is a file, not a folder")
        try:
            path.mkdir(exist_ok=True)
        except OSError as err:
            raise GenDataError(f"cannot make the folder {path}: {err.strerror}") from None
    return path


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never half.

    ``path``'s folder must exist (made by :func:`output_root` / :func:`confined_dir`); a link or
    a folder at ``path`` is refused. The file gets the permissions ``open()`` would give it.
    """
    path = Path(path)
    _refuse_link(path, "the file")
    if path.is_dir():
        raise GenDataError(f"cannot write the file {path}: a folder of that name exists")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    tmp = path.parent / f".{path.name}.{os.getpid()}.tmp"
    try:
        fd = os.open(tmp, flags, 0o666 & ~_umask())
    except FileExistsError:  # left by a killed writer of this pid number: it is ours to replace
        _refuse_link(tmp, "the temporary file")
        os.unlink(tmp)
        fd = os.open(tmp, flags, 0o666 & ~_umask())
    except OSError as err:
        raise GenDataError(f"cannot write into {path.parent}: {err.strerror}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        if os.path.lexists(tmp):
            os.unlink(tmp)
        if isinstance(err, OSError):
            raise GenDataError(f"cannot write {path}: {err.strerror or err}") from None
        raise


def atomic_write_text(path: Path, text: str) -> None:
    """:func:`atomic_write_bytes` of ``text`` in UTF-8, written byte for byte (no newline translation)."""
    atomic_write_bytes(path, text.encode("utf-8"))
