"""User-facing errors: one base class, a source span, and FILE:LINE:COL rendering.

Every error meant for a user is a :class:`GenError`. Where the problem has a place in a
``.gen`` file (or in the Python file that called the builder API), the error carries a
:class:`Span` and renders as::

    FILE:LINE:COL: error: MESSAGE
        the source line
            ^
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Iterable, Sequence

__all__ = [
    "Span",
    "GenError",
    "GenSyntaxError",
    "GenSemanticError",
    "GenDataError",
    "GenRuntimeError",
    "ImproperPriorWarning",
    "did_you_mean",
    "printable",
]


@dataclass(frozen=True)
class Span:
    """A place in a source text: 1-based line and column, and the text it belongs to."""

    file: str = "<string>"
    line: int | None = None
    column: int | None = None
    source: str | None = None  # the whole text, to show the line; None when unavailable

    def source_line(self) -> str | None:
        """The text of line ``line`` (lines end at ``\n`` only, as the lexer counts them)."""
        if self.source is None or self.line is None:
            return None
        lines = self.source.split("\n")
        if 1 <= self.line <= len(lines):
            return lines[self.line - 1].removesuffix("\r")
        return None


class GenError(Exception):
    """Base of every error gendsl means for a user.

    Parameters
    ----------
    message:
        What is wrong and, where possible, what to do about it.
    span:
        Where it is wrong, if it has a place.
    notes:
        Further diagnostics reported with this one (``check`` reports all errors of a file).
    """

    label = "error"

    def __init__(self, message: str, span: Span | None = None, notes: Sequence["GenError"] = ()):
        super().__init__(message)
        self.message = message
        self.span = span
        self.notes = list(notes)

    @property
    def file(self) -> str | None:
        return self.span.file if self.span else None

    @property
    def line(self) -> int | None:
        return self.span.line if self.span else None

    @property
    def column(self) -> int | None:
        return self.span.column if self.span else None

    def render_one(self) -> str:
        span = self.span
        if span is None or span.line is None:
            where = f"{printable(span.file)}: " if span is not None and span.file else ""
            return f"{where}{self.label}: {printable(self.message)}"
        col = span.column or 1
        head = f"{printable(span.file)}:{span.line}:{col}: {self.label}: {printable(self.message)}"
        text = span.source_line()
        if text is None:
            return head
        text, col = _window(text, col)
        # one character per column, none that a terminal would act on
        text = "".join(c if c.isprintable() else " " if c == "\t" else "?" for c in text)
        return f"{head}\n    {text}\n    {' ' * (col - 1)}^"

    def render(self) -> str:
        return "\n".join(e.render_one() for e in [self, *self.notes])

    def __str__(self) -> str:
        return self.render()


_WIDTH = 160  # longest source line shown whole


def _window(text: str, col: int) -> tuple[str, int]:
    """A long line cut to about :data:`_WIDTH` characters around ``col``; the column within it."""
    if len(text) <= _WIDTH:
        return text, col
    start = max(0, min(col - 1 - _WIDTH // 2, len(text) - _WIDTH))
    head, tail = ("..." if start > 0 else ""), ("..." if start + _WIDTH < len(text) else "")
    return head + text[start:start + _WIDTH] + tail, col - start + len(head)


def printable(message: str) -> str:
    """``message`` with control characters escaped (a message may quote a string of the file)."""
    return "".join(c if c.isprintable() or c == "\n" else ascii(c)[1:-1] for c in message)


class GenSyntaxError(GenError):
    """The text does not follow the grammar."""


class GenSemanticError(GenError):
    """The model is well formed but wrong: unknown names, cycles, types, shapes, arguments."""


class GenDataError(GenError):
    """The data handed to fit / infer / log_prob does not match the model."""


class GenRuntimeError(GenError):
    """Something failed while running a compiled program (non-finite loss, failed MCMC init...)."""


class ImproperPriorWarning(UserWarning):
    """A latent variable has an improper (flat) prior: the posterior may be improper."""


def did_you_mean(name: str, candidates: Iterable[str]) -> str:
    """Return ``"; did you mean 'x'?"`` for the closest candidate, or ``""`` if none is close."""
    close = difflib.get_close_matches(name, sorted(set(candidates)), n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""
