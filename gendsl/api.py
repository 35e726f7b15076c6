"""The public entry points of the language: read, check and compile models.

``parse`` / ``load`` / ``parse_all`` run the text front end with the registry's catalog and the
run-folder source resolver (:data:`gendsl.runfolder.CATALOG`); ``compile`` makes a
:class:`~gendsl.program.Program` that opens ``prior(...)`` runs through the same resolver.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

from gendsl import lang
from gendsl.core.model import Model
from gendsl.program import Program
from gendsl.runfolder import CATALOG, SOURCES

__all__ = ["parse", "parse_all", "load", "compile"]


def parse_all(text: str, file: str = "<string>") -> list[Model]:
    """Every model in ``text``, checked; the file's errors are raised together."""
    return lang.parse_all(text, CATALOG, file)


def parse(text: str, model: str | None = None, file: str = "<string>") -> Model:
    """The first model in ``text`` (or the one named ``model``), checked."""
    return lang.parse(text, CATALOG, model=model, file=file)


def load(path: str | Path, model: str | None = None) -> Model:
    """Read a ``.gen`` file and return its first model (or the one named ``model``), checked."""
    return lang.load(path, CATALOG, model=model)


def compile(model: Model, dims: Mapping[str, int] | None = None) -> Program:
    """Compile a checked model into a :class:`~gendsl.program.Program`.

    Parameters
    ----------
    model:
        From :func:`load`, :func:`parse` or the builder API.
    dims:
        Values of ``int`` inputs used as dimensions, if known now; otherwise they are read from
        the data handed to ``fit`` / ``infer``.
    """
    return Program(model, dict(dims or {}), SOURCES.load)
