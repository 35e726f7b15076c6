"""Semantic checks: statements -> checked :class:`~gendsl.core.model.Model`.

One pass per concern, each reporting every problem it finds with its span: definitions
(duplicates, roles), right-hand sides (resolution against the signatures), references
(undefined names with "did you mean", dimensions bound to ``int`` inputs, ``given=``),
the graph (cycles), then types and shapes in topological order.
"""

from __future__ import annotations

from dataclasses import dataclass

import networkx as nx

from gendsl.core.ast import BinOp, Call, Expr, Index, ListExpr, Name, Num, Str, Unary, names_in, unparse, walk
from gendsl.core.catalog import Catalog
from gendsl.core.functions import FUNCTIONS
from gendsl.core.model import Model, Statement, Variable
from gendsl.core.resolve import resolve_call
from gendsl.core.signatures import Spec
from gendsl.core.types import Shape, VarType, broadcast_shapes, shape_str
from gendsl.errors import GenError, GenSemanticError, Span, did_you_mean

__all__ = ["Typing", "check"]
_SUPPORT_BASE = {"real": "real", "positive": "positive", "unit": "unit", "interval": "real", "int": "int",
                 "simplex": "unit", "corr_cholesky": "real"}


class _Errors:
    def __init__(self):
        self.items: list[GenError] = []

    def add(self, msg: str, span: Span | None):
        self.items.append(GenSemanticError(msg, span))

    def extend(self, err: GenError):
        self.items.append(err)

    def raise_if_any(self):
        if self.items:
            items = sorted(self.items, key=lambda e: (e.line or 0, e.column or 0))
            raise GenSemanticError(items[0].message, items[0].span, notes=items[1:])


#: largest integer literal in an expression (int32 arithmetic)
MAX_INT_LITERAL = 2**31 - 1


def _value_parts(rhs: Expr, spec: Spec | None) -> list[Expr]:
    """Every sub-expression that is computed with (for ``~``: inside expression arguments only)."""
    if spec is None:
        exprs = [rhs]
    else:
        exprs = []
        stack = [spec]
        while stack:
            sp = stack.pop()
            for value in sp.options.values():
                if isinstance(value, Spec):
                    stack.append(value)
                elif isinstance(value, (Num, Str, Name, Unary, BinOp, Call, Index, ListExpr)):
                    exprs.append(value)
    return [e for x in exprs for e in walk(x)]


def _value_error(e: Expr) -> str | None:
    """What is wrong with a literal computed with, if anything: strings, ``[]``, huge integers."""
    if isinstance(e, Str):
        return f"a string cannot be used as a number, got {unparse(e)[:40]}"
    if isinstance(e, ListExpr) and not e.items:
        return "an empty list '[]' has no value; write at least one element"
    if isinstance(e, Num) and isinstance(e.value, int) and e.value > MAX_INT_LITERAL:
        return (f"integer {e.value} is too large for integer arithmetic (at most {MAX_INT_LITERAL}); "
                f"write it as a real number, {e.value}.0")
    return None


class _Shapes:
    """Shape inference for expressions, given the types of the variables in scope."""

    def __init__(self, types: dict[str, VarType], int_inputs: set[str], catalog: Catalog):
        self.types = types
        self.int_inputs = int_inputs
        self.catalog = catalog

    def of(self, e: Expr) -> Shape:
        if isinstance(e, (Num, Str)):
            return ()
        if isinstance(e, Name):
            return self.types[e.id].shape
        if isinstance(e, Unary):
            return self.of(e.operand)
        if isinstance(e, BinOp):
            return self._broadcast(e, [self.of(e.left), self.of(e.right)])
        if isinstance(e, ListExpr):
            shapes = [self.of(i) for i in e.items]
            inner = self._broadcast(e, shapes) if shapes else ()
            return (len(e.items), *inner)
        if isinstance(e, Index):
            base = self.of(e.value)
            if len(e.indices) > len(base):
                raise GenSemanticError(f"too many indices for '{unparse(e.value)}' of shape {shape_str(base)}", e.span)
            for axis, i in enumerate(e.indices):
                self._check_literal_index(e, i, base[axis])
            idx_shapes = [self.of(i) for i in e.indices]
            lead = self._broadcast(e, idx_shapes)
            return (*lead, *base[len(e.indices):])
        if isinstance(e, Call):
            fn = FUNCTIONS.get(e.func)
            if fn is None:
                sig = self.catalog.signatures.get(e.func)
                hint = f" ({e.func} is a {sig.category}, not a function)" if sig else did_you_mean(e.func, FUNCTIONS)
                raise GenSemanticError(f"unknown function '{e.func}'{hint}", e.span)
            lo, hi = fn.nargs
            if not lo <= len(e.args) <= hi or e.kwargs:
                want = f"{lo}" if lo == hi else f"{lo} to {hi}"
                raise GenSemanticError(f"{e.func}() takes {want} positional argument(s), got {len(e.args)}"
                                       + (" and keywords" if e.kwargs else ""), e.span)
            shapes = [self.of(a) for a in e.args]
            lits = [a.value if isinstance(a, Num) and isinstance(a.value, int) else
                    (a.id if isinstance(a, Name) and a.id in self.int_inputs else None) for a in e.args]
            try:
                return fn.rule(shapes, lits)
            except ValueError as err:
                raise GenSemanticError(f"{e.func}(): {err}", e.span) from None
        raise TypeError(e)

    @staticmethod
    def _check_literal_index(e: Index, i: Expr, dim) -> None:
        """A literal index must be an integer within the dimension (when that is known)."""
        num = i.operand if isinstance(i, Unary) and isinstance(i.operand, Num) else i
        if not isinstance(num, Num):
            return
        if not isinstance(num.value, int):
            raise GenSemanticError(f"an index must be an integer, got {unparse(i)}", i.span)
        value = -num.value if num is not i else num.value
        if isinstance(dim, int) and not -dim <= value < dim:
            raise GenSemanticError(f"index {value} is out of range for an axis of length {dim} "
                                   f"in '{unparse(e)[:60]}' (indexing is 0-based)", i.span)

    def _broadcast(self, e: Expr, shapes: list[Shape]) -> Shape:
        try:
            return broadcast_shapes(*shapes)
        except ValueError as err:
            raise GenSemanticError(f"in '{unparse(e)}': {err}", e.span) from None


def _distribution_shape(spec: Spec, call: Call, shapes: _Shapes) -> Shape:
    sig = shapes.catalog.signatures[spec.name]
    arg_shapes = [shapes.of(spec[p.name]) for p in sig.params]
    if sig.event == "broadcast":
        try:
            return broadcast_shapes(*arg_shapes)
        except ValueError as err:
            raise GenSemanticError(f"arguments of {spec.name}(): {err}", call.span) from None
    if sig.event in ("drop_last", "first") and not arg_shapes[0]:
        what = sig.params[0].name
        raise GenSemanticError(f"{spec.name}() needs a vector of {what} (shape [K]), got a scalar", call.span)
    if sig.event == "drop_last":
        return arg_shapes[0][:-1]
    if sig.event == "first":
        return arg_shapes[0]
    if sig.event == "mvn":
        loc, cov = arg_shapes
        if len(cov) < 2:
            raise GenSemanticError(f"{spec.name}(): the covariance must be a matrix, got shape {shape_str(cov)}", call.span)
        return broadcast_shapes(loc, cov[:-1])
    if sig.event == "lkj":
        d = spec[sig.params[0].name]
        if isinstance(d, Num) and isinstance(d.value, int):
            return (d.value, d.value)
        if isinstance(d, Name) and d.id in shapes.int_inputs:
            return (d.id, d.id)
        raise GenSemanticError(f"{spec.name}({sig.params[0].name}, ...) needs an integer dimension", call.span)
    raise AssertionError(sig.event)


def _compatible(declared: Shape, inferred: Shape) -> bool:
    try:
        return broadcast_shapes(declared, inferred) == tuple(declared)
    except ValueError:
        return False


def _anchor(spec: Spec, file: str | None, catalog: Catalog) -> Spec:
    """``spec`` with every nested mechanism's :meth:`anchor` applied (run folders made absolute)."""
    options = dict(spec.options)
    for key, value in spec.options.items():
        if isinstance(value, Spec):
            options[key] = _anchor(value, file, catalog)
    spec = spec if options == spec.options else Spec(spec.name, spec.category, options)
    declaration = catalog.mechanisms.get(spec.name) if spec.category == "mechanism" else None
    return declaration.anchor(spec, file, catalog) if declaration is not None else spec


@dataclass(frozen=True)
class Typing:
    """What a mechanism's type rule may ask while its variable is checked.

    Attributes
    ----------
    types:
        The (declared or inferred) types of the variables checked so far: every parent.
    catalog:
        The catalog of the check (signatures, declarations, sources).
    call:
        The right-hand side being checked (for error positions).
    """

    types: dict[str, VarType]
    int_inputs: frozenset[str]
    catalog: Catalog
    call: Call

    def shape_of(self, expr: Expr, extra: dict[str, VarType] | None = None) -> Shape:
        """Shape of an expression over the variables in scope (and ``extra`` ones)."""
        return _Shapes({**self.types, **(extra or {})}, set(self.int_inputs), self.catalog).of(expr)

    def distribution_shape(self, spec: Spec) -> Shape:
        """Shape of one draw of a resolved distribution spec."""
        call = self.call.args[0] if self.call.args else self.call
        return _distribution_shape(spec, call, _Shapes(self.types, set(self.int_inputs), self.catalog))


def check(name: str, statements: list[Statement], catalog: Catalog, span: Span | None = None) -> Model:
    """Check ``statements`` of the model ``name``; return the :class:`Model` or raise.

    ``catalog`` holds the signatures and mechanism declarations to check against (see
    :mod:`gendsl.registry`) and the resolver of ``prior(...)`` sources.

    Raises
    ------
    GenSemanticError
        With every problem found (the first as the error, the rest as its notes).
    """
    errors = _Errors()
    span = span or Span()

    # 1. definitions and roles
    data_decl: dict[str, Statement] = {}
    definition: dict[str, Statement] = {}
    for st in statements:
        if st.kind == "data":
            if st.name in data_decl:
                errors.add(f"'{st.name}' is declared as data twice (first on line {data_decl[st.name].span.line})", st.span)
            elif st.name in definition:
                errors.add(f"data '{st.name}' must be declared before it is defined (line {definition[st.name].span.line})", st.span)
            else:
                data_decl[st.name] = st
        else:
            if st.name in definition:
                errors.add(f"'{st.name}' is defined twice (first on line {definition[st.name].span.line})", st.span)
                continue
            if st.kind == "let" and st.name in data_decl:
                errors.add(f"'{st.name}' is declared as data and cannot also be a deterministic quantity", st.span)
                continue
            if st.kind == "sample" and st.type is not None and st.name in data_decl and data_decl[st.name].type != st.type:
                errors.add(f"'{st.name}' is declared as {data_decl[st.name].type} on line "
                           f"{data_decl[st.name].span.line} but typed {st.type} here", st.type_span or st.span)
            definition[st.name] = st
    names = [*data_decl, *(n for n in definition if n not in data_decl)]
    declared_type = {n: s.type for n, s in data_decl.items()}
    for n, st in definition.items():
        if st.type is not None:
            declared_type.setdefault(n, st.type)
    int_inputs = {n for n, s in data_decl.items() if n not in definition and s.type.base == "int" and not s.type.shape}

    # 2. right-hand sides and references
    specs: dict[str, Spec] = {}
    parents: dict[str, list[str]] = {n: [] for n in names}
    for n, st in definition.items():
        refs: list[tuple[str, Span]] = []
        if st.kind == "sample":
            rhs = st.rhs
            if not isinstance(rhs, Call):
                errors.add(f"the right side of '~' must be a distribution or a mechanism, got '{unparse(rhs)}'", rhs.span)
                continue
            sig = catalog.signatures.get(rhs.func)
            if sig is None or sig.category not in ("distribution", "mechanism"):
                known = [s for s, g in catalog.signatures.items() if g.category in ("distribution", "mechanism")]
                what = f"'{rhs.func}' is a {sig.category}, not a distribution or mechanism" if sig else \
                    f"unknown distribution or mechanism '{rhs.func}'{did_you_mean(rhs.func, known)}"
                errors.add(what, rhs.span)
                continue
            try:
                spec = _anchor(resolve_call(rhs, catalog.signatures), rhs.span.file, catalog)
            except GenError as err:
                errors.extend(err)
                continue
            specs[n] = spec
            declaration = catalog.mechanisms.get(spec.name) if spec.category == "mechanism" else None
            allowed_self = declaration is not None and declaration.self_reference(spec, n)
            for ref in names_in(rhs):
                if ref.id == n and allowed_self:
                    continue
                refs.append((ref.id, ref.span))
        else:
            refs = [(r.id, r.span) for r in names_in(st.rhs)]
        for part in _value_parts(st.rhs, specs.get(n)):
            problem = _value_error(part)
            if problem is not None:
                errors.add(problem, part.span)
            if not isinstance(part, Call):
                continue
            fn = part
            if fn.func not in FUNCTIONS:
                sig = catalog.signatures.get(fn.func)
                hint = f" ({fn.func} is a {sig.category}, not a function)" if sig else did_you_mean(fn.func, FUNCTIONS)
                errors.add(f"unknown function '{fn.func}'{hint}", fn.span)
        for ref, rspan in refs:
            if ref == n:
                errors.add(f"'{n}' depends on itself", rspan)
            elif ref not in names:
                errors.add(f"undefined name '{ref}'{did_you_mean(ref, names)}", rspan)
            elif ref not in parents[n]:
                parents[n].append(ref)
    for n in names:
        t = declared_type.get(n)
        if t is None:
            continue
        for d in t.symbols:
            where = (data_decl.get(n) or definition[n])
            tspan = where.type_span or where.span
            if d not in names:
                errors.add(f"undefined dimension '{d}' in the type of '{n}'{did_you_mean(d, names)}", tspan)
            elif d not in int_inputs:
                errors.add(f"dimension '{d}' of '{n}' must be an int input (declare 'data {d}: int')", tspan)
            elif d not in parents[n] and d != n:
                parents[n].append(d)
    errors.raise_if_any()

    # 3. the graph
    graph = nx.DiGraph()
    graph.add_nodes_from(names)
    for n in names:
        for p in parents[n]:
            graph.add_edge(p, n)
    try:
        cycle = nx.find_cycle(graph)
    except nx.NetworkXNoCycle:
        cycle = None
    if cycle:
        path = " -> ".join([e[0] for e in cycle] + [cycle[0][0]])
        first = cycle[0][1]
        errors.add(f"cycle in the model: {path}", definition[first].span)
        errors.raise_if_any()

    # 4. roles, types and shapes in topological order
    types: dict[str, VarType] = {}
    shapes = _Shapes(types, int_inputs, catalog)
    order = {n: i for i, n in enumerate(names)}
    for n in nx.lexicographical_topological_sort(graph, key=lambda x: order[x]):
        st = definition.get(n) or data_decl[n]
        declared = declared_type.get(n)
        role = ("observed" if n in data_decl else "latent") if st.kind == "sample" else \
            ("input" if st.kind == "data" else "deterministic")
        spec = specs.get(n)
        try:
            vtype = _infer_type(n, st, declared, spec, shapes, types, int_inputs, catalog)
        except GenError as err:
            errors.extend(err)
            types[n] = declared or VarType("real")
            continue
        types[n] = vtype
        graph.nodes[n]["var"] = Variable(n, role, vtype, st.rhs, spec, tuple(parents[n]), st.span)
    errors.raise_if_any()
    return Model(name, graph, span, tuple(statements))


def _infer_type(n, st, declared, spec, shapes, types, int_inputs, catalog: Catalog) -> VarType:
    if st.kind == "data":
        return declared
    if st.kind == "let":
        shape = shapes.of(st.rhs)
        return VarType("real", shape)
    call: Call = st.rhs
    if spec.category == "distribution":
        sig = catalog.signatures[spec.name]
        inferred = _distribution_shape(spec, call, shapes)
        base = _SUPPORT_BASE[sig.support]
        if declared is None:
            return VarType(base, inferred)
        if not _compatible(declared.shape, inferred):
            raise GenSemanticError(f"{spec.name}(...) draws shape {shape_str(inferred)} but '{n}' is "
                                   f"declared {shape_str(declared.shape)}", call.span)
        discrete = base == "int"
        if declared.discrete != discrete:
            raise GenSemanticError(f"{spec.name}() draws {'integers' if discrete else 'real numbers'} but '{n}' is "
                                   f"declared {declared}", call.span)
        if declared.base in ("positive", "unit") and base not in (declared.base, "unit") and sig.support != "interval":
            raise GenSemanticError(f"{spec.name}() draws {base} values but '{n}' is declared {declared}", call.span)
        return declared
    # mechanisms: their declaration's type rule
    mech = spec.name
    declaration = catalog.mechanisms[mech]
    typing = Typing(dict(types), frozenset(int_inputs), catalog, call)
    vtype = declared if declared is not None else declaration.infer_type(n, spec, typing)
    if vtype is None:
        raise GenSemanticError(f"the type of '{n}' cannot be inferred from {mech}(...); write it, "
                               f"e.g. '{n}: real[2] ~ {mech}(...)'", st.span)
    if vtype.base not in declaration.bases:
        raise GenSemanticError(f"{mech}() cannot model '{n}' of type {vtype}; it models "
                               f"{', '.join(declaration.bases)} variables", call.span)
    declaration.check_spec(n, spec, vtype, typing)
    return vtype
