"""Writing inside one output folder only, and reading only what can be read safely.

Writing: no write through a link, no path that leaves the output folder.

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

Reading: :func:`readable` refuses what is not a regular file (a FIFO would hang, ``/dev/zero``
never ends) and files above a size limit; :func:`check_npz` refuses an ``.npz`` whose members
declare (in their headers, read before anything is decompressed) far more data than the file
holds, a zip bomb.
"""

from __future__ import annotations

import os
import stat
import zipfile
from pathlib import Path

import numpy as np

from gendsl.errors import GenDataError

__all__ = ["output_root", "confined_dir", "atomic_write_bytes", "atomic_write_text", "readable", "read_text",
           "check_npz", "TEXT_LIMIT", "NPZ_EXPANSION"]

#: largest text file read (JSON records and data, model files): 64 MiB
TEXT_LIMIT = 64 * 2**20
#: an ``.npz`` may declare at most this many times its own size (and always 1 GiB)
NPZ_EXPANSION, NPZ_FLOOR = 100, 2**30


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


def readable(path: str | Path, what: str, limit: int | None = None) -> Path:
    """``path`` if it is a regular file (links followed) of at most ``limit`` bytes; else a GenDataError."""
    path = Path(path)
    try:
        info = os.stat(path)
    except OSError as err:
        raise GenDataError(f"cannot read {what} {path}: {err.strerror}") from None
    if not stat.S_ISREG(info.st_mode):
        kind = "a folder" if stat.S_ISDIR(info.st_mode) else "not a regular file (a device, pipe or socket)"
        raise GenDataError(f"cannot read {what} {path}: it is {kind}")
    if limit is not None and info.st_size > limit:
        raise GenDataError(f"{what} {path} is {info.st_size} bytes, more than the {limit} bytes read")
    return path


def read_text(path: str | Path, what: str, limit: int = TEXT_LIMIT) -> str:
    """The UTF-8 text of a regular file of at most ``limit`` bytes (no newline translation)."""
    path = readable(path, what, limit)
    try:
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as err:
        raise GenDataError(f"{what} {path} is not UTF-8 text (byte {err.start})") from None
    except OSError as err:
        raise GenDataError(f"cannot read {what} {path}: {err.strerror}") from None


def check_npz(path: str | Path, what: str) -> Path:
    """``path`` if it is a regular ``.npz`` whose members declare at most ``NPZ_EXPANSION`` times
    its size (and at least 1 GiB is always allowed), read from the headers alone."""
    path = readable(path, what)
    allowed = max(NPZ_FLOOR, NPZ_EXPANSION * os.path.getsize(path))
    declared = 0
    try:
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                declared += info.file_size  # what the member unpacks to, from the zip directory
                if declared > allowed:
                    raise GenDataError(f"{what} {path} unpacks to more than {allowed} bytes ({info.filename} and "
                                       f"before): refused as a possible zip bomb")
                if info.filename.endswith(".npy"):
                    with archive.open(info) as member:
                        version = np.lib.format.read_magic(member)
                        header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                                  else np.lib.format.read_array_header_2_0)
                        shape, _, dtype = header(member)
                    if int(np.prod(shape, dtype=np.float64)) * dtype.itemsize > allowed:
                        raise GenDataError(f"{what} {path}: member {info.filename} declares shape {list(shape)}, "
                                           f"more than the {allowed} bytes allowed")
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as err:
        raise GenDataError(f"cannot read {what} {path}: {err}") from None
    return path
