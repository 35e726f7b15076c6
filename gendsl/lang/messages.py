"""Curated syntax messages: lark's parse failures -> :class:`GenSyntaxError` a person can act on."""

from __future__ import annotations

import lark

from gendsl.errors import GenSyntaxError, Span, did_you_mean

__all__ = ["syntax_error", "describe_token"]

_TERMINALS = {
    "NAME": "a name",
    "NUMBER": "a number",
    "INT": "an integer",
    "STRING": "a string",
    "TYPE_NAME": "a type (real, positive, unit, int, token)",
    "_NEWLINE": "end of line",
    "$END": "end of file",
    "LPAR": "'('", "RPAR": "')'", "LSQB": "'['", "RSQB": "']'", "LBRACE": "'{'", "RBRACE": "'}'",
    "COMMA": "','", "COLON": "':'", "TILDE": "'~'", "EQUAL": "'='", "PLUS": "'+'", "MINUS": "'-'",
    "STAR": "'*'", "SLASH": "'/'", "CIRCUMFLEX": "'^'", "SEMICOLON": "';'",
    "MODEL": "'model'", "DATA": "'data'", "OF": "'of'",
}


def describe_token(name: str) -> str:
    return _TERMINALS.get(name, repr(name.lower()))


def _expected(names) -> str:
    words = sorted({describe_token(n) for n in names if not n.startswith("__")})
    if len(words) > 6:
        words = words[:6] + ["..."]
    return ", ".join(words)


def syntax_error(err: lark.exceptions.UnexpectedInput, text: str, file: str) -> GenSyntaxError:
    """Turn a lark failure into one clear message at the offending line and column."""
    line, col = getattr(err, "line", None), getattr(err, "column", None)
    if line is None or line < 1:
        # end of input: point just past the last non-blank character
        lines = text.rstrip().split("\n")
        line, col = len(lines), len(lines[-1]) + 1
    span = Span(file, line, col, text)
    if isinstance(err, lark.exceptions.UnexpectedCharacters):
        ch = err.char
        if ch == "\r":
            return GenSyntaxError("unexpected carriage return (U+000D) not followed by a newline; "
                                  "end lines with \\n or \\r\\n", span)
        shown = repr(ch) if ch.isprintable() else f"U+{ord(ch):04X}"
        return GenSyntaxError(f"unexpected character {shown}", span)
    if isinstance(err, lark.exceptions.UnexpectedEOF):
        return GenSyntaxError(f"unexpected end of file; expected {_expected(err.expected)}", span)
    if isinstance(err, lark.exceptions.UnexpectedToken):
        tok = err.token
        expected = set(err.expected)
        if tok.type == "$END":
            if "RBRACE" in expected:
                return GenSyntaxError("unexpected end of file: a model is missing its closing '}'", span)
            return GenSyntaxError(f"unexpected end of file; expected {_expected(expected)}", span)
        if tok.type == "_NEWLINE":
            return GenSyntaxError(f"unexpected end of line; expected {_expected(expected - {'_NEWLINE'})}", span)
        got = f"'{tok}'" if tok.type not in ("_NEWLINE", "$END") else describe_token(tok.type)
        keywords = [word for word, name in (("model", "MODEL"), ("data", "DATA")) if name in expected]
        hint = did_you_mean(str(tok), keywords) if tok.type == "NAME" else ""
        if expected >= {"MODEL"} and len(expected) <= 2:
            return GenSyntaxError(f"unexpected {got}: statements must be inside 'model NAME {{ ... }}'{hint}", span)
        if "TILDE" in expected and "EQUAL" in expected and tok.type not in ("TILDE", "EQUAL"):
            return GenSyntaxError(f"unexpected {got}; a statement is 'NAME ~ ...', 'NAME = ...' or 'data NAME: TYPE'", span)
        return GenSyntaxError(f"unexpected {got}; expected {_expected(expected)}{hint}", span)
    return GenSyntaxError(str(err).splitlines()[0], span)
