"""Text -> statements: the lark parser and the tree transformer.

``parse_models(text, file)`` returns ``[(name, [Statement, ...], Span), ...]`` for every model
in the text, or raises :class:`~gendsl.errors.GenSyntaxError` with file, line and column.

Nothing here recurses over the input: the parser is LALR, the transformer is lark's
non-recursive one, and expressions nested deeper than :data:`MAX_NESTING` are refused before
any later pass (checks, lowering), which do recurse, ever sees them.
"""

from __future__ import annotations

import functools
import sys

import lark
from lark import Transformer_NonRecursive, Tree, v_args

from gendsl.core.ast import BinOp, Call, Index, ListExpr, Name, Num, Slice, Str, Unary
from gendsl.core.model import Statement
from gendsl.core.types import BASES, MATRIX_BASES, VECTOR_BASES, VarType
from gendsl.errors import GenSyntaxError, Span, did_you_mean
from gendsl.lang.grammar import grammar_text
from gendsl.lang.messages import syntax_error

__all__ = ["parse_models", "MAX_NESTING", "MAX_DIMENSION"]

MAX_NESTING = 200
"""Deepest expression accepted: levels of operators, calls, lists and indexing (parentheses do not
count). CPython's parser stops at 200 levels too; every later pass stays far from the recursion limit."""

MAX_DIMENSION = 2**31 - 1
"""Largest dimension or vocabulary size (int32 indexing)."""

_MAX_DIGITS = len(str(int(sys.float_info.max)))
_NESTING_RULES = frozenset({"add", "sub", "mul", "div", "pow", "neg", "index", "call", "list",
                            "eq", "ne", "lt", "le", "gt", "ge", "and_", "or_"})


class _DropNewlinesInBrackets:
    """Post-lexer: newlines inside ( ) and [ ] do not end a statement."""

    always_accept = ("_NEWLINE",)

    def process(self, stream):
        depth = 0
        for tok in stream:
            if tok.type in ("LPAR", "LSQB"):
                depth += 1
            elif tok.type in ("RPAR", "RSQB"):
                depth = max(0, depth - 1)
            elif tok.type == "RBRACE":
                depth = 0
            if tok.type == "_NEWLINE" and depth > 0:
                continue
            yield tok


@functools.lru_cache(maxsize=1)
def _parser() -> lark.Lark:
    return lark.Lark(grammar_text(), parser="lalr", lexer="contextual", propagate_positions=True,
                     postlex=_DropNewlinesInBrackets(), maybe_placeholders=True)


def _check_nesting(tree: Tree, file: str, text: str) -> None:
    """Refuse expressions nested deeper than :data:`MAX_NESTING` (iteratively: no recursion)."""
    stack = [(tree, 0, None)]
    while stack:
        node, depth, outer = stack.pop()
        meta = node.meta if not node.meta.empty else outer
        depth += node.data in _NESTING_RULES
        if depth > MAX_NESTING:
            line, col = (meta.line, meta.column) if meta is not None else (1, 1)
            raise GenSyntaxError(f"expression nested too deeply (more than {MAX_NESTING} levels of operators, "
                                 f"calls, lists and indexing); split it into steps with 'NAME = ...'",
                                 Span(file, line, col, text))
        stack.extend((c, depth, meta) for c in reversed(node.children) if isinstance(c, Tree))


class _ToIR(Transformer_NonRecursive):
    """Parse tree -> (name, statements, span) per model. Front end only: no JAX here."""

    def __init__(self, file: str, text: str):
        super().__init__()
        self.file = file
        self.text = text

    def _span(self, meta_or_tok) -> Span:
        line = getattr(meta_or_tok, "line", None)
        col = getattr(meta_or_tok, "column", None)
        return Span(self.file, line, col, self.text)

    # -- models and statements --------------------------------------------------------------------
    def start(self, items):
        return [i for i in items if i is not None]

    @v_args(meta=True)
    def model(self, meta, items):
        name, *stmts = items
        return (str(name), [s for s in stmts if s is not None], self._span(name))

    @v_args(meta=True)
    def data_decl(self, meta, items):
        name, (vtype, tspan) = items
        return Statement("data", str(name), vtype, None, self._span(name), tspan)

    @v_args(meta=True)
    def sample_stmt(self, meta, items):
        name, typed, rhs = items
        vtype, tspan = typed if typed is not None else (None, None)
        return Statement("sample", str(name), vtype, rhs, self._span(name), tspan)

    @v_args(meta=True)
    def param_decl(self, meta, items):
        """``NAME: TYPE`` alone: a parameter with a flat (improper) prior, as ``NAME: TYPE ~ flat()``."""
        name, (vtype, tspan) = items
        return Statement("sample", str(name), vtype, Call("flat", span=tspan), self._span(name), tspan)

    @v_args(meta=True)
    def let_stmt(self, meta, items):
        name, rhs = items
        return Statement("let", str(name), None, rhs, self._span(name))

    @v_args(meta=True)
    def local_stmt(self, meta, items):
        """``local NAME = EXPR``: a deterministic quantity that is not stored with the draws."""
        name, rhs = items
        return Statement("let", str(name), None, rhs, self._span(name), scope="local")

    @v_args(meta=True)
    def generated_sample(self, meta, items):
        """``generated NAME ~ DIST(...)``: a fresh draw per posterior draw, outside the log density."""
        name, typed, rhs = items
        vtype, tspan = typed if typed is not None else (None, None)
        return Statement("sample", str(name), vtype, rhs, self._span(name), tspan, scope="generated")

    @v_args(meta=True)
    def generated_let(self, meta, items):
        """``generated NAME = EXPR``: computed per posterior draw, outside the log density."""
        name, rhs = items
        return Statement("let", str(name), None, rhs, self._span(name), scope="generated")

    @v_args(meta=True)
    def target_stmt(self, meta, items):
        name, rhs = items
        if str(name) != "target":
            raise GenSyntaxError(f"'+=' only adds to the log density, as 'target += EXPR'; '{name}' cannot be "
                                 f"updated (write '{name} = ...' once)", self._span(name))
        return Statement("target", "target", None, rhs, self._span(name))

    @v_args(meta=True)
    def fn_stmt(self, meta, items):
        """``fn NAME(ARG, ...) = EXPR``: a user function (expanded at its calls by the check)."""
        name, *params, body = items
        params = [p for p in params if p is not None]
        for i, p in enumerate(params):
            if str(p) in map(str, params[:i]):
                raise GenSyntaxError(f"the argument '{p}' of '{name}' is named twice", self._span(p))
        return Statement("fn", str(name), None, body, self._span(name), params=tuple(map(str, params)))

    @v_args(meta=True)
    def type(self, meta, items):
        base, bounds, dims, vocab = items
        shape = tuple(dims) if dims is not None else ()
        base = str(base)
        span = self._span(meta)
        if base == "token" and vocab is None:
            raise GenSyntaxError("a token type needs its vocabulary size: token[N] of V", span)
        if base != "token" and vocab is not None:
            raise GenSyntaxError(f"only token types take 'of V'; {base} does not", span)
        if base in VECTOR_BASES and not shape:
            raise GenSyntaxError(f"{base}[K] takes its length (and, before it, any batch dimensions: "
                                 f"{base}[J, K] is J vectors of length K)", span)
        if base in MATRIX_BASES:
            if len(shape) != 1:
                raise GenSyntaxError(f"{base}[K] takes one dimension, its size K (a K x K matrix)", span)
            shape = shape * 2
        lower = upper = None
        if bounds is not None:
            bounds, bspan = bounds
            if base not in ("real", "int"):
                raise GenSyntaxError(f"bounds are written on real or int, e.g. real<lower=0>; {base} takes none", bspan)
            lower, upper = bounds.get("lower"), bounds.get("upper")
        assert base in BASES
        return VarType(base, shape, vocab, lower, upper), span

    @v_args(meta=True)
    def bounds(self, meta, items):
        out = {}
        for key, value in items:
            if key in out:
                raise GenSyntaxError(f"the bound '{key}' is given twice", value.span)
            out[key] = value
        return out, self._span(meta)

    def bound(self, items):
        key, value = items
        if str(key) not in ("lower", "upper"):
            raise GenSyntaxError(f"a type's bounds are 'lower' and 'upper', got '{key}'"
                                 f"{did_you_mean(str(key), ['lower', 'upper'])}", self._span(key))
        return str(key), value

    def dims(self, items):
        return list(items)

    def dim_int(self, items):
        text = str(items[0]).lstrip("0") or "0"
        if len(text) > len(str(MAX_DIMENSION)) or int(text) > MAX_DIMENSION:
            raise GenSyntaxError(f"dimension {text[:20]}{'...' if len(text) > 20 else ''} is too large "
                                 f"(at most {MAX_DIMENSION})", self._span(items[0]))
        value = int(text)
        if value <= 0:
            raise GenSyntaxError(f"a dimension must be positive, got {value}", self._span(items[0]))
        return value

    def dim_name(self, items):
        return str(items[0])

    # -- expressions ------------------------------------------------------------------------------
    def _bin(op):
        @v_args(meta=True)
        def f(self, meta, items):
            return BinOp(op, items[0], items[1], self._span(meta))

        return f

    add, sub, mul, div, pow = _bin("+"), _bin("-"), _bin("*"), _bin("/"), _bin("^")
    eq, ne, lt, le, gt, ge = _bin("=="), _bin("!="), _bin("<"), _bin("<="), _bin(">"), _bin(">=")
    and_, or_ = _bin("and"), _bin("or")

    @v_args(meta=True)
    def neg(self, meta, items):
        return Unary("-", items[0], self._span(meta))

    @v_args(meta=True)
    def index(self, meta, items):
        return Index(items[0], tuple(items[1:]), self._span(meta))

    @v_args(meta=True)
    def slice(self, meta, items):
        start, stop = items
        return Slice(start, stop, self._span(meta))

    @v_args(meta=True)
    def call(self, meta, items):
        name, args = items
        positional, keywords = [], []
        for a in args or []:
            if isinstance(a, tuple):
                keywords.append(a)
            else:
                if keywords:
                    raise GenSyntaxError("a positional argument cannot follow a keyword argument", a.span)
                positional.append(a)
        return Call(str(name), tuple(positional), tuple(keywords), self._span(name))

    def arguments(self, items):
        return list(items)

    def kwarg(self, items):
        return (str(items[0]), items[1])

    def number(self, items):
        tok = items[0]
        text = str(tok)
        is_int = text.isdigit()
        too_large = is_int and len(text.lstrip("0")) > _MAX_DIGITS
        if not too_large:
            value = int(text) if is_int else float(text)
            too_large = value > sys.float_info.max
        if too_large:
            shown = text if len(text) <= 20 else text[:20] + "..."
            raise GenSyntaxError(f"number {shown} is too large (at most {sys.float_info.max:.6g})", self._span(tok))
        return Num(value, self._span(tok))

    def string(self, items):
        tok = items[0]
        raw = str(tok)[1:-1]
        return Str(raw.replace('\\"', '"').replace("\\\\", "\\"), self._span(tok))

    def name(self, items):
        return Name(str(items[0]), self._span(items[0]))

    @v_args(meta=True)
    def true_(self, meta, items):
        """``true``: 1 (a bool option's value, or 1 in arithmetic)."""
        return Num(1, self._span(meta))

    @v_args(meta=True)
    def false_(self, meta, items):
        """``false``: 0."""
        return Num(0, self._span(meta))

    @v_args(meta=True)
    def list(self, meta, items):
        items = [i for i in items if i is not None]
        return ListExpr(tuple(items), self._span(meta))


def parse_models(text: str, file: str = "<string>") -> list[tuple[str, list[Statement], Span]]:
    """Parse ``text`` into one ``(name, statements, span)`` per model.

    Raises
    ------
    GenSyntaxError
        At the first place the text leaves the grammar, with a curated message.
    """
    try:
        tree = _parser().parse(text)
    except lark.exceptions.UnexpectedInput as err:
        raise syntax_error(err, text, file) from None
    _check_nesting(tree, file, text)
    try:
        return _ToIR(file, text).transform(tree)
    except lark.exceptions.VisitError as err:
        if isinstance(err.orig_exc, GenSyntaxError):
            raise err.orig_exc from None
        raise
