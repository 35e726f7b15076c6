"""Locate the one grammar file: in a source checkout it is ``grammar/gen.lark`` at the top;
in an installed wheel it ships as ``gendsl/grammar/gen.lark``."""

from __future__ import annotations

from pathlib import Path

__all__ = ["grammar_path", "grammar_text"]


def grammar_path() -> Path:
    here = Path(__file__).resolve().parent.parent
    for candidate in (here / "grammar" / "gen.lark", here.parent / "grammar" / "gen.lark"):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError("gen.lark is missing from this installation of gendsl")


def grammar_text() -> str:
    return grammar_path().read_text(encoding="utf-8")
