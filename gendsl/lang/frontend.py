"""The driver of the text front end: parse -> check, one pure pass each.

The check is handed a :class:`~gendsl.core.catalog.Catalog` (what the language's names are and
what each mechanism accepts); :mod:`gendsl.api` passes the registry's.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from gendsl.core.catalog import Catalog
from gendsl.core.check import check
from gendsl.core.model import Model
from gendsl.errors import GenError, GenSemanticError, GenSyntaxError, Span, did_you_mean
from gendsl.lang.parser import parse_models

__all__ = ["parse_all", "parse", "load", "read_text"]


def parse_all(text: str, catalog: Catalog, file: str = "<string>") -> list[Model]:
    """Parse and check every model in ``text``; raise the file's errors together."""
    text = text.removeprefix("\ufeff")  # a byte-order mark some editors write
    models = parse_models(text, file)
    if not models:
        raise GenSyntaxError("no model in this file; write 'model NAME { ... }'", Span(file, 1, 1, text))
    out, errors, seen = [], [], {}
    for name, statements, span in models:
        if name in seen:
            errors.append(GenSemanticError(f"model '{name}' is defined twice (first on line {seen[name]})", span))
            continue
        seen[name] = span.line
        try:
            out.append(check(name, statements, catalog, span))
        except GenError as err:
            errors.extend([err, *err.notes])
            err.notes = []
    if errors:
        raise type(errors[0])(errors[0].message, errors[0].span, notes=errors[1:])
    return out


def _pick(models: list[Model], model: str | None, where: Span) -> Model:
    if model is None:
        return models[0]
    for m in models:
        if m.name == model:
            return m
    names = [m.name for m in models]
    raise GenSemanticError(f"no model named '{model}' (models here: {', '.join(names)}){did_you_mean(model, names)}", where)


def parse(text: str, catalog: Catalog, model: str | None = None, file: str = "<string>") -> Model:
    """The first model in ``text`` (or the one named ``model``), checked."""
    return _pick(parse_all(text, catalog, file), model, Span(file))


#: largest .gen file read (16 MiB)
MAX_SOURCE_BYTES = 16 * 2**20


def _is_stdin(path: Path) -> bool:
    """``/dev/stdin`` (``cat m.gen | gendsl fit /dev/stdin``): a pipe, read once and capped."""
    return str(path) in ("/dev/stdin", "-")


def read_text(path: str | Path) -> str:
    """The UTF-8 text of a ``.gen`` file; an unreadable or undecodable file is a :class:`GenError`."""
    path = Path(path)
    try:
        info = os.stat(path)
        if not stat.S_ISREG(info.st_mode) and not _is_stdin(path):
            raise GenError(f"cannot read {path}: it is not a regular file", Span(str(path)))
        if info.st_size > MAX_SOURCE_BYTES:
            raise GenError(f"{path} is {info.st_size} bytes; a .gen file is read up to {MAX_SOURCE_BYTES}", Span(str(path)))
        with open(path, "rb") as f:
            raw = f.read(MAX_SOURCE_BYTES + 1)
    except (OSError, ValueError) as err:  # ValueError: a NUL byte in the path
        raise GenError(f"cannot read {path}: {getattr(err, 'strerror', None) or err}", Span(str(path))) from None
    if len(raw) > MAX_SOURCE_BYTES:
        raise GenError(f"{path} is longer than the {MAX_SOURCE_BYTES} bytes a .gen file is read up to", Span(str(path)))
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        col = err.start - (raw.rfind(b"\n", 0, err.start) + 1) + 1
        raise GenSyntaxError("the file is not valid UTF-8 text", Span(str(path), line, col)) from None
    return text


def load(path: str | Path, catalog: Catalog, model: str | None = None) -> Model:
    """Read a ``.gen`` file and return its first model (or the one named ``model``), checked."""
    return _pick(parse_all(read_text(path), catalog, str(path)), model, Span(str(path)))
