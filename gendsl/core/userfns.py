"""User functions: ``fn NAME(ARG, ...) = EXPR`` statements, expanded at their calls.

Pure Python. A user function is pure and reads only its arguments (and built-in functions and
user functions defined before it), so expanding ``f(x, 2 * y)`` to its body with the arguments
substituted is exact: the later passes (references, shapes, lowering) see the expanded
expression, and its shape follows from the shapes of the arguments at each call. The nodes
of the body take the span of the call, so an error inside the body points at the call that
caused it. ``ode(f, ...)`` takes a function by name: it becomes a :class:`~gendsl.core.ast.Lambda`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from gendsl.core.ast import BinOp, Call, Expr, Index, Lambda, ListExpr, Name, Num, Slice, Str, Unary, unparse, walk
from gendsl.core.catalog import Catalog
from gendsl.core.functions import FUNCTIONS, STAN_ODES, TAKES_FUNCTION
from gendsl.core.hints import function_hint
from gendsl.core.model import Statement
from gendsl.core.types import VarType
from gendsl.errors import GenError, GenSemanticError, Span, did_you_mean

__all__ = ["UserFunction", "expand_functions"]


@dataclass(frozen=True)
class UserFunction:
    """A checked ``fn`` statement: its argument names and its body, calls of earlier functions expanded."""

    name: str
    params: tuple[str, ...]
    body: Expr
    span: Span


def _err(msg: str, span: Span) -> GenSemanticError:
    return GenSemanticError(msg, span)


class _Expander:
    """Expands calls of the user functions defined so far; collects every problem found."""

    def __init__(self, catalog: Catalog):
        self.catalog = catalog
        self.functions: dict[str, UserFunction] = {}
        self.later: dict[str, Statement] = {}  # functions defined further down
        self.errors: list[GenError] = []
        self.failed: set[str] = set()  # functions whose definition is in error

    def define(self, st: Statement) -> None:
        """Check one ``fn`` statement and record it."""
        self.later.pop(st.name, None)
        if st.name in FUNCTIONS or st.name in self.catalog.signatures:
            what = "built-in function" if st.name in FUNCTIONS else self.catalog.signatures[st.name].category
            self.errors.append(_err(f"'{st.name}' is a {what}; a user function needs another name", st.span))
            return
        if st.name in self.functions:
            self.errors.append(_err(f"the function '{st.name}' is defined twice (first on line "
                                    f"{self.functions[st.name].span.line})", st.span))
            return
        passed = {id(c.args[0]) for c in walk(st.rhs) if isinstance(c, Call) and c.func in TAKES_FUNCTION and c.args}
        strays = [r for r in walk(st.rhs) if isinstance(r, Name) and r.id not in st.params and id(r) not in passed]
        for ref in strays:
                args = ", ".join(st.params) or "none"
                self.errors.append(_err(f"the body of '{st.name}' may use only its arguments ({args}), built-in "
                                        f"functions and functions defined before it; '{ref.id}' is not one of its "
                                        f"arguments (pass it in: fn {st.name}({', '.join((*st.params, ref.id))}) "
                                        f"= ...)", ref.span))
        options = {id(v) for c in walk(st.rhs) if isinstance(c, Call) and c.func in TAKES_FUNCTION for _, v in c.kwargs}
        strings = [e for e in walk(st.rhs) if isinstance(e, Str) and id(e) not in options]
        for e in strings:
            self.errors.append(_err(f"a string cannot be used as a number, got {unparse(e)[:40]}", e.span))
        if strays or strings:
            self.failed.add(st.name)
            return
        try:
            body = self.expand(st.rhs, inside=st.name)
        except GenError as err:
            self.errors.append(err)
            self.failed.add(st.name)
            return
        self.functions[st.name] = UserFunction(st.name, st.params, body, st.span)

    def expand(self, e: Expr, inside: str | None = None) -> Expr:
        """``e`` with every call of a user function replaced by its body."""
        if isinstance(e, Call):
            return self._call(e, inside)
        if isinstance(e, Unary):
            out = replace(e, operand=self.expand(e.operand, inside))
        elif isinstance(e, BinOp):
            out = replace(e, left=self.expand(e.left, inside), right=self.expand(e.right, inside))
        elif isinstance(e, Index):
            out = replace(e, value=self.expand(e.value, inside),
                          indices=tuple(self.expand(i, inside) for i in e.indices))
        elif isinstance(e, Slice):
            out = replace(e, **{k: None if b is None else self.expand(b, inside)
                                for k, b in (("start", e.start), ("stop", e.stop))})
        elif isinstance(e, ListExpr):
            out = replace(e, items=tuple(self.expand(i, inside) for i in e.items))
        else:
            out = e
        return out

    def _call(self, e: Call, inside: str | None) -> Expr:
        args = tuple(self.expand(a, inside) for a in e.args)
        kwargs = tuple((k, self.expand(v, inside)) for k, v in e.kwargs)
        if e.func in (*TAKES_FUNCTION, *STAN_ODES) and args and isinstance(e.args[0], Name):
            args = (self._function_value(e.args[0], inside), *args[1:])
        if e.func in self.failed:  # its definition is in error already: no second message at its calls
            return Num(0.0, e.span)
        fn = self.functions.get(e.func)
        if fn is None:
            self._refuse_unknown(e, inside)
            return replace(e, args=args, kwargs=kwargs)
        where = e.span
        if kwargs:
            raise _err(f"{e.func}() takes its arguments by position ({', '.join(fn.params)}), not by keyword", where)
        if len(args) != len(fn.params):
            raise _err(f"{e.func}() takes {len(fn.params)} argument(s) ({', '.join(fn.params)}), got {len(args)}",
                       where)
        return _substitute(fn.body, dict(zip(fn.params, args)), where)

    def _function_value(self, ref: Name, inside: str | None) -> Lambda:
        fn = self.functions.get(ref.id)
        if fn is None and ref.id == inside:
            raise _err(f"'{inside}' passes itself to an ODE solve: user functions cannot be recursive", ref.span)
        if fn is None:
            raise _err(f"'{ref.id}' is not a user function; define it first with 'fn {ref.id}(t, y, ...) = ...'"
                       f"{did_you_mean(ref.id, self.functions)}", ref.span)
        return Lambda(fn.name, fn.params, fn.body, ref.span)

    def _refuse_unknown(self, e: Call, inside: str | None) -> None:
        """Calls in a function's body: the function itself (recursion) or one defined later."""
        if inside is None:
            known = e.func in FUNCTIONS or e.func in self.catalog.signatures
            if not known and did_you_mean(e.func, self.functions):
                raise _err(f"unknown function '{e.func}'{did_you_mean(e.func, self.functions)}", e.span)
            return
        if e.func == inside:
            raise _err(f"'{inside}' calls itself: user functions cannot be recursive", e.span)
        if e.func in self.later:
            raise _err(f"'{inside}' calls '{e.func}', which is defined later (line {self.later[e.func].span.line}); "
                       f"define '{e.func}' first", e.span)
        if e.func not in FUNCTIONS and e.func not in self.catalog.signatures:
            raise _err(f"unknown function '{e.func}' in the body of '{inside}'"
                       f"{_hint(e.func, self.catalog, self.functions)}", e.span)


def _hint(name: str, catalog: Catalog, functions) -> str:
    """The "did you mean" for an unknown function, among built-ins and user functions."""
    close = did_you_mean(name, functions)
    return close if close else function_hint(name, catalog)


def _substitute(body: Expr, values: dict[str, Expr], span: Span) -> Expr:
    """``body`` (which reads only the arguments) with each argument name replaced by its value."""
    if isinstance(body, Name):
        return values[body.id]
    if isinstance(body, Unary):
        return replace(body, operand=_substitute(body.operand, values, span), span=span)
    if isinstance(body, BinOp):
        return replace(body, left=_substitute(body.left, values, span), right=_substitute(body.right, values, span),
                       span=span)
    if isinstance(body, Call):
        return replace(body, args=tuple(_substitute(a, values, span) for a in body.args),
                       kwargs=tuple((k, _substitute(v, values, span)) for k, v in body.kwargs), span=span)
    if isinstance(body, Index):
        return replace(body, value=_substitute(body.value, values, span),
                       indices=tuple(_substitute(i, values, span) for i in body.indices), span=span)
    if isinstance(body, Slice):
        return replace(body, start=None if body.start is None else _substitute(body.start, values, span),
                       stop=None if body.stop is None else _substitute(body.stop, values, span), span=span)
    if isinstance(body, ListExpr):
        return replace(body, items=tuple(_substitute(i, values, span) for i in body.items), span=span)
    return replace(body, span=span)


def _expand_type(vtype: VarType | None, expander: _Expander) -> VarType | None:
    if vtype is None or (vtype.lower is None and vtype.upper is None):
        return vtype
    return replace(vtype, **{k: None if b is None else expander.expand(b)
                             for k, b in (("lower", vtype.lower), ("upper", vtype.upper))})


def expand_functions(statements: list[Statement], catalog: Catalog) -> tuple[list[Statement], list[GenError]]:
    """Check the ``fn`` statements and expand their calls in every other statement.

    Returns
    -------
    ``(statements, errors)``: the statements other than ``fn`` ones, calls expanded, and every
    problem found (unknown or misused functions, bodies reading other names, recursion).
    """
    expander = _Expander(catalog)
    expander.later = {st.name: st for st in statements if st.kind == "fn"}
    for st in statements:
        if st.kind == "fn":
            expander.define(st)
    out = []
    for st in statements:
        if st.kind == "fn":
            continue
        try:
            rhs = None if st.rhs is None else expander.expand(st.rhs)
            out.append(replace(st, rhs=rhs, type=_expand_type(st.type, expander)))
        except GenError as err:
            expander.errors.append(err)
    return out, expander.errors
