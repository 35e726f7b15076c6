"""The Python builder API: the same statements the text front end makes, from Python.

    from gendsl.builder import ModelBuilder, normal, half_cauchy, real, integer
    m = ModelBuilder("eight_schools")
    J = m.data("J", integer())
    y = m.data("y", real(J))
    sigma = m.data("sigma", real(J))
    mu = m.sample("mu", normal(0, 5))
    tau = m.sample("tau", half_cauchy(5))
    theta_raw = m.sample("theta_raw", normal(0, 1), type=real(J))
    theta = m.let("theta", mu + tau * theta_raw)
    m.sample("y", normal(theta, sigma))
    model = m.build()          # the same checked Model as the .gen text gives

Every statement of the language has its method: ``data``, ``sample`` (``NAME ~ RHS``), ``param``
(``NAME: TYPE``, a flat prior), ``let``, ``local``, ``generated``, ``target`` (``target += EXPR``)
and ``fn`` (``fn NAME(ARGS) = EXPR``, from a Python function of :class:`Ref` arguments). Types
take bounds (``real(N, lower=0)``) and the constrained bases have their constructors
(``ordered(K)``, ``simplex(K)``, ``cholesky_factor_corr(K)``...).

Every language name (distributions, mechanisms, networks, options, functions) is a function
here that builds the call; variables are :class:`Ref` objects with Python operators. Errors point
at the Python line that made the statement.
"""

from __future__ import annotations

import dataclasses
import inspect
import sys
from typing import Any, Callable

from gendsl.core.ast import BinOp, Call, Expr, Index, ListExpr, Name, Num, Opaque, Slice, Str, Unary, unparse
from gendsl.core.check import check
from gendsl.core.functions import FUNCTIONS
from gendsl.core.model import Model, Statement
from gendsl.core.types import MATRIX_BASES, VECTOR_BASES, VarType
from gendsl.errors import GenSemanticError, Span
from gendsl.registry import SIGNATURES
from gendsl.runfolder import CATALOG
from gendsl.sources import PriorSource

__all__ = ["Ref", "Fn", "ModelBuilder", "real", "positive", "unit", "integer", "token", *VECTOR_BASES, *MATRIX_BASES,
           "call", "expr_of", "prior"]


def _caller_span(depth: int = 2) -> Span:
    frame = sys._getframe(depth)
    return Span(frame.f_code.co_filename, frame.f_lineno, 1, None)


def expr_of(value: Any, span: Span | None = None) -> Expr:
    """Turn a Python value (number, string, list, :class:`Ref`) into an expression tree."""
    span = span or Span()
    if isinstance(value, Ref):
        return value.expr
    if isinstance(value, bool):
        return Num(int(value), span)
    if isinstance(value, (int, float)):  # a negative number as the text writes it: -(1)
        return Unary("-", Num(-value, span), span) if value < 0 else Num(value, span)
    if isinstance(value, str):
        return Str(value, span)
    if isinstance(value, (list, tuple)):
        return ListExpr(tuple(expr_of(v, span) for v in value), span)
    if isinstance(value, slice):
        if value.step is not None:
            raise GenSemanticError(f"a slice takes no step ({value!r}): write start:stop", span)
        return Slice(None if value.start is None else expr_of(value.start, span),
                     None if value.stop is None else expr_of(value.stop, span), span)
    raise GenSemanticError(f"cannot use a {type(value).__name__} in a model expression ({value!r})", span)


class Ref:
    """An expression in the builder API: a variable, a call, or arithmetic on them."""

    __slots__ = ("expr",)
    __array_priority__ = 1000  # numbers on the left defer to Ref

    def __init__(self, expr: Expr):
        self.expr = expr

    def _bin(self, op, other, reflected=False):
        a, b = expr_of(self), expr_of(other)
        return Ref(BinOp(op, b, a) if reflected else BinOp(op, a, b))

    def __add__(self, o): return self._bin("+", o)
    def __radd__(self, o): return self._bin("+", o, True)
    def __sub__(self, o): return self._bin("-", o)
    def __rsub__(self, o): return self._bin("-", o, True)
    def __mul__(self, o): return self._bin("*", o)
    def __rmul__(self, o): return self._bin("*", o, True)
    def __truediv__(self, o): return self._bin("/", o)
    def __rtruediv__(self, o): return self._bin("/", o, True)
    def __pow__(self, o): return self._bin("^", o)
    def __rpow__(self, o): return self._bin("^", o, True)
    def __xor__(self, o): return self._bin("^", o)
    def __lt__(self, o): return self._bin("<", o)
    def __le__(self, o): return self._bin("<=", o)
    def __gt__(self, o): return self._bin(">", o)
    def __ge__(self, o): return self._bin(">=", o)
    def __and__(self, o): return self._bin("and", o)
    def __rand__(self, o): return self._bin("and", o, True)
    def __or__(self, o): return self._bin("or", o)
    def __ror__(self, o): return self._bin("or", o, True)
    # ``==`` stays Python's identity test (a Ref is a dict key); the language's is ``Ref.eq``
    def eq(self, o): return self._bin("==", o)
    def ne(self, o): return self._bin("!=", o)
    def __neg__(self): return Ref(Unary("-", self.expr))
    def __pos__(self): return self

    def __getitem__(self, idx):
        idx = idx if isinstance(idx, tuple) else (idx,)
        return Ref(Index(self.expr, tuple(expr_of(i) for i in idx)))

    @property
    def name(self) -> str:
        if not isinstance(self.expr, Name):
            raise AttributeError("only a variable has a name")
        return self.expr.id

    def __repr__(self) -> str:
        return f"Ref({unparse(self.expr)})"


class Fn(Ref):
    """A user function made by :meth:`ModelBuilder.fn`: call it (``f(x, a)``) to use it in an
    expression, or pass it where the language takes a function's name (``scan(f, ...)``,
    ``ode(f, ...)``)."""

    __slots__ = ()

    def __call__(self, *args) -> Ref:
        span = _caller_span(2)
        return Ref(Call(self.name, tuple(expr_of(a, span) for a in args), (), span))


def call(func: str, *args, _depth: int = 2, **kwargs) -> Ref:
    """Build the call ``func(args..., key=value...)`` of any language name."""
    span = _caller_span(_depth)

    def convert(key, value):
        if key == "E" and callable(value) and not isinstance(value, Ref):
            value = _energy_function(value)
        return expr_of(value, span)

    if func == "energy" and args:
        args = (_energy_function(args[0]) if callable(args[0]) and not isinstance(args[0], Ref) else args[0], *args[1:])
    pos = tuple(expr_of(a, span) for a in args)
    kws = tuple((k, convert(k, v)) for k, v in kwargs.items() if v is not None)
    return Ref(Call(func, pos, kws, span))


def _energy_function(fn: Callable) -> Ref:
    """An energy given as a Python function of the variable: symbolic when it can be, else opaque."""
    placeholder = Ref(Name("__self__"))
    try:
        out = fn(placeholder)
        if isinstance(out, Ref):
            return out
    except (TypeError, AttributeError, ValueError):  # not symbolic (calls jax.numpy, numpy...): a function
        pass
    return Ref(Opaque(fn, getattr(fn, "__name__", "function")))


def _bind_self(expr, name: str):
    """Replace the energy's placeholder for its own variable by the variable's name."""
    if isinstance(expr, Name):
        return Name(name, expr.span) if expr.id == "__self__" else expr
    if isinstance(expr, Opaque):
        return dataclasses.replace(expr, arg=name)
    if isinstance(expr, (Num, Str)):
        return expr
    if isinstance(expr, Unary):
        return dataclasses.replace(expr, operand=_bind_self(expr.operand, name))
    if isinstance(expr, BinOp):
        return dataclasses.replace(expr, left=_bind_self(expr.left, name), right=_bind_self(expr.right, name))
    if isinstance(expr, Call):
        return dataclasses.replace(expr, args=tuple(_bind_self(a, name) for a in expr.args),
                                   kwargs=tuple((k, _bind_self(v, name)) for k, v in expr.kwargs))
    if isinstance(expr, Index):
        return dataclasses.replace(expr, value=_bind_self(expr.value, name),
                                   indices=tuple(_bind_self(i, name) for i in expr.indices))
    if isinstance(expr, ListExpr):
        return dataclasses.replace(expr, items=tuple(_bind_self(i, name) for i in expr.items))
    if isinstance(expr, Slice):
        return dataclasses.replace(expr, start=None if expr.start is None else _bind_self(expr.start, name),
                                   stop=None if expr.stop is None else _bind_self(expr.stop, name))
    raise TypeError(expr)


def _located(expr, span: Span):
    """``expr`` with every node that has no place (``Ref(Name("x"))`` made by hand, a variable's
    ``Ref``) placed at ``span``, the Python line of its statement, so that messages point there."""
    if isinstance(expr, tuple):
        return tuple(_located(e, span) for e in expr)
    if not dataclasses.is_dataclass(expr) or isinstance(expr, (str, Opaque)):
        return expr
    changes = {f.name: _located(getattr(expr, f.name), span) for f in dataclasses.fields(expr)
               if f.name != "span" and isinstance(getattr(expr, f.name), (tuple, *_EXPR_NODES))}
    if getattr(expr, "span", span).line is None:
        changes["span"] = span
    return dataclasses.replace(expr, **changes)


_EXPR_NODES = (BinOp, Call, Index, ListExpr, Name, Num, Slice, Str, Unary)


def _dims(dims) -> tuple:
    out = []
    for d in dims:
        if isinstance(d, Ref):
            d = d.name
        if not isinstance(d, (int, str)):
            raise GenSemanticError(f"a dimension is an int or an int input, got {d!r}", _caller_span(3))
        out.append(d)
    return tuple(out)


def _bounds(lower, upper) -> dict:
    span = _caller_span(3)
    return {"lower": None if lower is None else expr_of(lower, span), "upper": None if upper is None else expr_of(upper, span)}


def real(*dims, lower=None, upper=None) -> VarType:
    """``real<lower=..., upper=...>[dims]`` (each bound optional: a number or an expression)"""
    return VarType("real", _dims(dims), **_bounds(lower, upper))


def positive(*dims) -> VarType:
    """``positive[dims]``"""
    return VarType("positive", _dims(dims))


def unit(*dims) -> VarType:
    """``unit[dims]``"""
    return VarType("unit", _dims(dims))


def integer(*dims, lower=None, upper=None) -> VarType:
    """``int<lower=..., upper=...>[dims]``"""
    return VarType("int", _dims(dims), **_bounds(lower, upper))


def _constrained(base: str):
    def make(size) -> VarType:
        (k,) = _dims([size])
        return VarType(base, (k, k) if base in MATRIX_BASES else (k,))

    make.__name__ = make.__qualname__ = base
    make.__doc__ = f"``{base}[K]``" + (" (a K x K matrix)" if base in MATRIX_BASES else " (a vector of length K)")
    return make


def token(n, of) -> VarType:
    """``token[n] of V``"""
    (n,), (v,) = _dims([n]), _dims([of])
    return VarType("token", (n,), v)


class ModelBuilder:
    """Builds a model statement by statement; :meth:`build` checks it like the text front end."""

    def __init__(self, name: str):
        self.name = name
        self.statements: list[Statement] = []
        self.span = _caller_span(2)

    def _add(self, kind: str, name: str, type: VarType | None, rhs: Expr | None, span: Span, **fields) -> None:
        rhs = None if rhs is None else _located(rhs, span)
        self.statements.append(Statement(kind, name, type, rhs, span, **fields))

    def data(self, name: str, type: VarType) -> Ref:
        """``data NAME: TYPE``"""
        self._add("data", name, type, None, _caller_span(2))
        return Ref(Name(name))

    def sample(self, name: str, rhs: Ref, type: VarType | None = None) -> Ref:
        """``NAME ~ RHS`` (or ``NAME: TYPE ~ RHS``)."""
        expr = _bind_self(expr_of(rhs), name)
        self._add("sample", name, type, expr, _caller_span(2))
        return Ref(Name(name))

    def param(self, name: str, type: VarType) -> Ref:
        """``NAME: TYPE``: a parameter with a flat (improper) prior, as ``NAME: TYPE ~ flat()``."""
        span = _caller_span(2)
        self._add("sample", name, type, Call("flat", span=span), span, type_span=span)
        return Ref(Name(name))

    def let(self, name: str, value) -> Ref:
        """``NAME = EXPR``"""
        self._add("let", name, None, expr_of(value), _caller_span(2))
        return Ref(Name(name))

    def local(self, name: str, value) -> Ref:
        """``local NAME = EXPR``: a quantity later statements use, not stored with the draws."""
        self._add("let", name, None, expr_of(value), _caller_span(2), scope="local")
        return Ref(Name(name))

    def generated(self, name: str, rhs, type: VarType | None = None) -> Ref:
        """``generated NAME ~ DIST`` when ``rhs`` is a distribution's call (``normal(mu, s)``), else
        ``generated NAME = EXPR``: drawn or computed per posterior draw, outside the log density."""
        expr, span = expr_of(rhs), _caller_span(2)
        if isinstance(expr, Call) and expr.func in SIGNATURES:
            self._add("sample", name, type, expr, span, type_span=span if type else None, scope="generated")
        elif type is not None:
            raise GenSemanticError(f"'generated {name} = ...' takes no type (its shape follows from the expression); "
                                   f"a type goes with a draw, 'generated {name}: TYPE ~ DIST'", span)
        else:
            self._add("let", name, None, expr, span, scope="generated")
        return Ref(Name(name))

    def target(self, value) -> None:
        """``target += EXPR``: the sum of ``EXPR``'s elements is added to the log density."""
        self._add("target", "target", None, expr_of(value), _caller_span(2))

    def fn(self, name: str, body: Callable[..., Any]) -> Fn:
        """``fn NAME(ARGS) = EXPR`` from a Python function of :class:`Ref` arguments (its parameter
        names are the arguments'): ``step = m.fn("step", lambda c, x, a: a * c + x)``; then
        ``step(u, v, w)`` in expressions, or ``scan(step, init, xs, a)``."""
        span = _caller_span(2)
        try:
            params = tuple(inspect.signature(body).parameters)
        except (TypeError, ValueError):
            raise GenSemanticError(f"fn '{name}': its body must be a Python function of its arguments", span) from None
        out = body(*(Ref(Name(p)) for p in params))
        self._add("fn", name, None, expr_of(out, span), span, params=params)
        return Fn(Name(name, span))

    def build(self) -> Model:
        """The checked :class:`~gendsl.core.model.Model` (raises the same errors as the text)."""
        return check(self.name, list(self.statements), CATALOG, self.span)


def _make(name: str):
    def f(*args, **kwargs):
        return call(name, *args, _depth=3, **kwargs)

    f.__name__ = name
    sig = SIGNATURES.get(name)
    f.__doc__ = f"``{name}(...)``" + (f": {sig.doc}" if sig is not None and sig.doc else "")
    return f


def prior(program, params, node: str | None = None) -> Ref:
    """A trained ``program`` (with ``params``) as a right-hand side: ``m.sample("x", gendsl.prior(prog, params))``."""
    source = PriorSource(program, params, node)
    source.node_name()  # fail early, at the caller's line
    return call("prior", Ref(Opaque(source, f"prior of {program.model.name}")), _depth=3,
                **({"node": node} if node else {}))


for _base in (*VECTOR_BASES, *MATRIX_BASES):
    globals()[_base] = _constrained(_base)

for _name in [*SIGNATURES, *FUNCTIONS]:
    if _name == "prior":
        continue
    globals()[_name] = _make(_name)
    __all__.append(_name)
