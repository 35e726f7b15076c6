"""Curated syntax messages: lark's parse failures -> :class:`GenSyntaxError` a person can act on."""

from __future__ import annotations

import re

import lark

from gendsl.errors import GenSyntaxError, Span, did_you_mean

__all__ = ["syntax_error", "describe_token"]

_TERMINALS = {
    "NAME": "a name",
    "NUMBER": "a number",
    "INT": "an integer",
    "STRING": "a string",
    "TYPE_NAME": "a type (real, positive, unit, int, token, ordered, simplex, ...)",
    "_NEWLINE": "end of line",
    "$END": "end of file",
    "LPAR": "'('", "RPAR": "')'", "LSQB": "'['", "RSQB": "']'", "LBRACE": "'{'", "RBRACE": "'}'",
    "COMMA": "','", "COLON": "':'", "TILDE": "'~'", "EQUAL": "'='", "PLUS": "'+'", "MINUS": "'-'",
    "STAR": "'*'", "SLASH": "'/'", "CIRCUMFLEX": "'^'", "SEMICOLON": "';'",
    "MODEL": "'model'", "DATA": "'data'", "OF": "'of'", "LESSTHAN": "'<'", "MORETHAN": "'>'",
}

_STATEMENTS = "a statement is 'NAME ~ ...', 'NAME = ...', 'NAME: TYPE', 'data NAME: TYPE' or 'target += ...'"

#: Stan's type names -> the gendsl type
_STAN_TYPES = {"vector": "real[K]", "row_vector": "real[K]", "matrix": "real[M, N]", "array": "real[N] (or int[N])",
               "cholesky_factor_cov": "cov_matrix[K] with cholesky(...)", "unit_vector": "real[K] normalised by hand"}


def _stan_hint(line: str, tok) -> str | None:
    """A message for a Stan construct on this line, if it is one."""
    words = line.lstrip()
    if words.startswith(("for ", "for(", "while ", "while(")):
        return ("there are no loops: write the body once, vectorised over all indices (e.g. "
                "'y ~ normal(alpha[g], sigma)' for every i at once; 'cumsum' for running sums), and a "
                "recurrence as 'scan(f, init, xs, ...)' with 'fn f(state, x, ...) = next state'")
    if str(tok) == "|":
        return "Stan's 'f_lpdf(y | ...)' is written 'logpdf(f(...), y)'"
    if str(tok) in _STAN_TYPES:
        return f"Stan's {tok} is written {_STAN_TYPES[str(tok)]} here"
    return None


_TYPE_WORD = (r"(?:real|positive_ordered|positive|unit|int|token|ordered|simplex|sum_to_zero|cholesky_factor_corr"
              r"|corr_matrix|cov_matrix|vector|row_vector)")
#: ``real[N]<lower=0>``: bounds written after the dimensions
_BOUNDS_AFTER_DIMS = re.compile(rf"\b({_TYPE_WORD})\s*(\[[^\]]*\])\s*(<[^>]*>)")
#: ``real<lower=0> s;`` (or ``vector<lower=0>[N] s ~ ...``): a Stan declaration, the type first
_STAN_DECLARATION = re.compile(rf"^\s*({_TYPE_WORD})\s*(<[^>]*>)?\s*(\[[^\]]*\])?\s+([A-Za-z_]\w*)\s*(~[^;]*)?;?\s*$")
#: ``T[low, high]`` after a distribution: Stan's truncation
_TRUNCATION = re.compile(r"T\s*\[([^,\]]*),([^\]]*)\]")


#: ``mu[2:T] ~ normal(...)``: a sampling statement on part of a variable
_PART_SAMPLED = re.compile(r"^\s*([A-Za-z_]\w*)\s*(\[[^\]]*\])\s*~\s*(.+?);?\s*$")


def _stan_statement_hint(line: str, col: int) -> str | None:
    """A message for a Stan declaration, truncation or sampling statement on part of a variable on
    this line (the error at column ``col``), if it is one."""
    part = _PART_SAMPLED.match(line)
    if part is not None and part.start(2) == col - 1:
        name, index, dist = part.groups()
        return (f"a '~' statement models a whole variable; Stan's '{name}{index} ~ ...' on part of one is written "
                f"'target += sum(logpdf({dist}, {name}{index}))' (and '{name}' declared with its type)")
    bounds = _BOUNDS_AFTER_DIMS.search(line)
    if bounds is not None and bounds.start(3) == col - 1:
        base, dims, limits = bounds.groups()
        return f"the bounds come right after the base type, before the dimensions: write '{base}{limits}{dims}'"
    decl = _STAN_DECLARATION.match(line)
    if decl is not None and col - 1 <= decl.start(4):
        base, limits, dims, name, dist = decl.groups()
        base = "real" if base in ("vector", "row_vector") else base
        sample = f" {dist.strip()}" if dist else ""
        return (f"this looks like a Stan declaration (type first, then the name); gendsl writes the name first: "
                f"'{name}: {base}{limits or ''}{dims or ''}{sample}'")
    truncation = _TRUNCATION.match(line, col - 1)
    if truncation is not None and "~" in line[:col - 1]:
        lhs, dist = (part.strip() for part in line[:col - 1].split("~", 1))
        ends = [f"{key}={value.strip()}" for key, value in zip(("low", "high"), truncation.groups()) if value.strip()]
        written = f"{lhs} ~ truncated({dist}, {', '.join(ends)})" if ends else f"{lhs} ~ {dist}"
        return f"Stan's truncation '{truncation.group(0)}' is written '{written}' here"
    return None


def _scope_hint(line: str, expected: set) -> str | None:
    """A message for a misused ``local`` or ``generated`` statement on this line, if it is one."""
    first = (line.split() or [""])[0]
    if first == "local" and expected & {"NAME", "EQUAL"}:
        return ("a local statement is 'local NAME = EXPR' (a quantity not stored with the draws); "
                "'local' is a keyword, not a name")
    if first == "generated" and expected & {"NAME", "EQUAL", "TILDE", "COLON"}:
        return ("a generated statement is 'generated NAME ~ DIST(...)' or 'generated NAME = EXPR' (per posterior "
                "draw, outside the log density); 'generated' is a keyword, not a name")
    return None


def describe_token(name: str) -> str:
    return _TERMINALS.get(name, repr(name.lower()))


def _expected(names) -> str:
    names = set(names)
    if "NUMBER" in names:  # true and false go where a number goes: "a number" says it
        names -= {"TRUE", "FALSE"}
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
    source = (text.split("\n")[line - 1] if 1 <= line <= text.count("\n") + 1 else "")
    token = err.char if isinstance(err, lark.exceptions.UnexpectedCharacters) else getattr(err, "token", "")
    stan = _stan_hint(source, token) or (_stan_statement_hint(source, col) if col else None)
    if stan is not None:
        return GenSyntaxError(stan, span)
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
        if tok.type == "LESSTHAN" and source[col:col + 1] == "-":
            return GenSyntaxError(f"unexpected {got}: '<-' is not an assignment here; write 'NAME ~ ...' or 'NAME = ...'", span)
        if str(tok) in ("<", ">", "<=", ">=", "==", "!=") and "EQUAL" not in expected:
            return GenSyntaxError(f"unexpected {got}: comparisons do not chain; write 'a < b and b < c'", span)
        scope = _scope_hint(source, expected)
        if scope is not None:
            return GenSyntaxError(f"unexpected {got}: {scope}", span)
        if "TILDE" in expected and "EQUAL" in expected and tok.type not in ("TILDE", "EQUAL"):
            return GenSyntaxError(f"unexpected {got}; {_STATEMENTS}", span)
        return GenSyntaxError(f"unexpected {got}; expected {_expected(expected)}{hint}", span)
    return GenSyntaxError(str(err).splitlines()[0], span)
