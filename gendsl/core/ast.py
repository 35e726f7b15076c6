"""Expression trees shared by the text front end and the builder API.

Every node carries the :class:`~gendsl.errors.Span` it came from. Right-hand sides of ``~`` are
plain :class:`Call` trees (``normal(0, 1)``, ``pushforward(normal(0, 1), coupling(layers=8))``);
what a call *means* (distribution, mechanism, network, option) is decided by the checks, by
looking the name up in the registries.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator, Union

from gendsl.errors import Span

__all__ = ["Expr", "Opaque", "Num", "Str", "Name", "Unary", "BinOp", "Call", "Index", "Slice", "ListExpr", "Lambda",
           "COMPARISONS",
           "walk", "names_in", "unparse"]

_NOSPAN = Span()


@dataclass(frozen=True)
class Num:
    value: float | int
    span: Span = field(default=_NOSPAN, compare=False, repr=False)


@dataclass(frozen=True)
class Str:
    value: str
    span: Span = field(default=_NOSPAN, compare=False, repr=False)


@dataclass(frozen=True)
class Name:
    id: str
    span: Span = field(default=_NOSPAN, compare=False, repr=False)


@dataclass(frozen=True)
class Unary:
    op: str  # "-"
    operand: "Expr"
    span: Span = field(default=_NOSPAN, compare=False, repr=False)


@dataclass(frozen=True)
class BinOp:
    op: str  # one of + - * / ^, a comparison (see COMPARISONS), "and", "or"
    left: "Expr"
    right: "Expr"
    span: Span = field(default=_NOSPAN, compare=False, repr=False)


@dataclass(frozen=True)
class Call:
    func: str
    args: tuple["Expr", ...] = ()
    kwargs: tuple[tuple[str, "Expr"], ...] = ()
    span: Span = field(default=_NOSPAN, compare=False, repr=False)

    def kwarg(self, key: str, default=None):
        for k, v in self.kwargs:
            if k == key:
                return v
        return default


@dataclass(frozen=True)
class Slice:
    """``start:stop`` inside an index (either bound may be omitted): ``X[:, i]``, ``x[0:K]``."""

    start: "Expr | None" = None
    stop: "Expr | None" = None
    span: Span = field(default=_NOSPAN, compare=False, repr=False)


@dataclass(frozen=True)
class Index:
    value: "Expr"
    indices: tuple["Expr | Slice", ...]
    span: Span = field(default=_NOSPAN, compare=False, repr=False)


@dataclass(frozen=True)
class ListExpr:
    items: tuple["Expr", ...]
    span: Span = field(default=_NOSPAN, compare=False, repr=False)


@dataclass(frozen=True)
class Lambda:
    """A user function passed by name (``ode(f, ...)``), its body expanded: it reads only ``params``.

    :func:`walk` does not enter the body (its names are the arguments, not variables of the model).
    """

    name: str
    params: tuple[str, ...]
    body: "Expr"
    span: Span = field(default=_NOSPAN, compare=False, repr=False)


@dataclass(frozen=True)
class Opaque:
    """A Python function of the variable (builder API only), e.g. an energy written with jax.numpy.

    Evaluated as ``fn(x)`` with ``x`` the value of the variable being defined.
    """

    fn: object
    label: str = "function"
    arg: str | None = None  # the variable it is a function of
    span: Span = field(default=_NOSPAN, compare=False, repr=False)


Expr = Union[Num, Str, Name, Unary, BinOp, Call, Index, Slice, ListExpr, Lambda, Opaque]


def walk(expr: Expr) -> Iterator[Expr]:
    """Yield ``expr`` and every sub-expression, depth first."""
    yield expr
    if isinstance(expr, Unary):
        yield from walk(expr.operand)
    elif isinstance(expr, BinOp):
        yield from walk(expr.left)
        yield from walk(expr.right)
    elif isinstance(expr, Call):
        for a in expr.args:
            yield from walk(a)
        for _, v in expr.kwargs:
            yield from walk(v)
    elif isinstance(expr, Index):
        yield from walk(expr.value)
        for i in expr.indices:
            yield from walk(i)
    elif isinstance(expr, Slice):
        for bound in (expr.start, expr.stop):
            if bound is not None:
                yield from walk(bound)
    elif isinstance(expr, ListExpr):
        for i in expr.items:
            yield from walk(i)


def names_in(expr: Expr) -> list[Name]:
    """Every :class:`Name` in ``expr`` (variables referenced), in order of appearance."""
    return [e for e in walk(expr) if isinstance(e, Name)]


#: comparison operators: their result is 1.0 where the comparison holds, else 0.0
COMPARISONS = ("==", "!=", "<", "<=", ">", ">=")

_PREC = {"or": 0.2, "and": 0.4, **{c: 0.6 for c in COMPARISONS}, "+": 1, "-": 1, "*": 2, "/": 2, "^": 4}


def unparse(expr: Expr, parent_prec: int = 0) -> str:
    """Render an expression back as ``.gen`` text (used by ``describe`` and error messages)."""
    if isinstance(expr, Num):
        return repr(expr.value)
    if isinstance(expr, Str):
        return '"' + expr.value.replace('"', '\\"') + '"'
    if isinstance(expr, Name):
        return expr.id
    if isinstance(expr, Unary):
        s = "-" + unparse(expr.operand, 3)
        return f"({s})" if parent_prec > 3 else s
    if isinstance(expr, BinOp):
        p = _PREC[expr.op]
        if expr.op == "^":
            s = f"{unparse(expr.left, p + 1)}^{unparse(expr.right, p)}"
        elif expr.op in COMPARISONS:  # not associative: parenthesise a comparison on either side
            s = f"{unparse(expr.left, p + 0.1)} {expr.op} {unparse(expr.right, p + 0.1)}"
        elif expr.op in ("and", "or"):
            s = f"{unparse(expr.left, p)} {expr.op} {unparse(expr.right, p + 0.1)}"
        else:
            s = f"{unparse(expr.left, p)} {expr.op} {unparse(expr.right, p + 1)}"
        return f"({s})" if p < parent_prec else s
    if isinstance(expr, Call):
        parts = [unparse(a) for a in expr.args] + [f"{k}={unparse(v)}" for k, v in expr.kwargs]
        return f"{expr.func}({', '.join(parts)})"
    if isinstance(expr, Index):
        return f"{unparse(expr.value, 5)}[{', '.join(unparse(i) for i in expr.indices)}]"
    if isinstance(expr, Slice):
        return ":".join("" if b is None else unparse(b) for b in (expr.start, expr.stop))
    if isinstance(expr, ListExpr):
        return "[" + ", ".join(unparse(i) for i in expr.items) + "]"
    if isinstance(expr, Lambda):
        return expr.name
    if isinstance(expr, Opaque):
        return f"<python {expr.label}>"
    raise TypeError(f"not an expression: {expr!r}")
