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
from gendsl.core.functions import FUNCTIONS, TAKES_FUNCTION
from gendsl.core.hints import function_hint
from gendsl.core.model import Factor, Model, Statement, Variable
from gendsl.core.resolve import literal, resolve_call
from gendsl.core.shapes import Shapes, compatible, distribution_shape
from gendsl.core.signatures import Spec
from gendsl.core.types import Shape, VarType, oversized, shape_str
from gendsl.core.userfns import expand_functions
from gendsl.errors import GenError, GenSemanticError, Span, did_you_mean

__all__ = ["Typing", "check"]
_SUPPORT_BASE = {"real": "real", "positive": "positive", "unit": "unit", "interval": "real", "int": "int",
                 "simplex": "unit", "corr_cholesky": "real", "any": "real"}
_SUPPORT_WORDS = {"positive": "positive values", "unit": "values in (0, 1)", "interval": "values in an interval",
                  "simplex": "simplexes", "corr_cholesky": "Cholesky factors of correlation matrices"}


class _Errors:
    def __init__(self):
        self.items: list[GenError] = []

    def add(self, msg: str, span: Span | None):
        self.items.append(GenSemanticError(msg, span))

    def extend(self, err: GenError):
        self.items.extend([err, *err.notes])  # an error that found several problems carries the rest as notes

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
        return Shapes({**self.types, **(extra or {})}, set(self.int_inputs), self.catalog).of(expr)

    def distribution_shape(self, spec: Spec) -> Shape:
        """Shape of one draw of a resolved distribution spec."""
        call = self.call.args[0] if self.call.args else self.call
        return distribution_shape(spec, call, Shapes(self.types, set(self.int_inputs), self.catalog))


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
    written = tuple(statements)
    statements, problems = expand_functions(statements, catalog)  # fn statements out, their calls expanded
    errors.items.extend(problems)

    # 1. definitions and roles
    data_decl: dict[str, Statement] = {}
    definition: dict[str, Statement] = {}
    targets: list[Statement] = []
    for st in statements:
        if st.kind == "target":
            targets.append(st)
        elif st.kind == "data":
            if st.name in data_decl:
                errors.add(f"'{st.name}' is declared as data twice (first on line {data_decl[st.name].span.line})", st.span)
            elif st.name in definition:
                errors.add(f"data '{st.name}' must be declared before it is defined (line {definition[st.name].span.line})", st.span)
            else:
                data_decl[st.name] = st
        else:
            if st.name in definition:
                errors.add(f"'{st.name}' is defined twice (first on line {definition[st.name].span.line})"
                           f"{_declared_then_sampled(definition[st.name], st)}", st.span)
                continue
            if st.scope == "generated" and st.name in data_decl:
                errors.add(f"'{st.name}' is declared as data and cannot also be generated (a generated quantity "
                           f"is drawn or computed per posterior draw; give it a new name)", st.span)
                continue
            if st.kind == "let" and st.name in data_decl:
                errors.add(f"'{st.name}' is declared as data and cannot also be a deterministic quantity", st.span)
                continue
            if st.kind == "sample" and isinstance(st.rhs, Call) and st.rhs.func == "flat" and st.name in data_decl:
                errors.add(f"'{st.name}' is data: model it with '{st.name} ~ DISTRIBUTION' (a declaration "
                           f"'{st.name}: TYPE' alone is a parameter with a flat prior)", st.span)
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
    int_data = {n for n, s in data_decl.items() if s.type.base == "int"}

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
            if st.scope == "generated" and (spec.category != "distribution" or spec.name == "flat"):
                what = "a mechanism, which it does not support" if spec.category != "distribution" else \
                    "an improper prior, which has no draws"
                errors.add(f"'generated {n} ~' needs a leaf distribution to draw from; {spec.name}() is {what}", rhs.span)
                continue
            if st.scope == "generated" and _restricts(st.type, sig.support):
                errors.add(f"'generated {n} ~' draws from {spec.name}() on its own support; the type {st.type} would "
                           f"restrict it, which cannot be drawn exactly (write the type without bounds)",
                           st.type_span or st.span)
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
        _check_parts(_value_parts(st.rhs, specs.get(n)), catalog, errors)
        for ref, rspan in refs:
            if ref == n:
                errors.add(f"'{n}' depends on itself", rspan)
            elif ref not in names:
                errors.add(f"undefined name '{ref}'{did_you_mean(ref, names)}", rspan)
            elif st.scope != "generated" and _generated(ref, definition):
                errors.add(_GENERATED_USE.format(ref=ref, user=f"'{n}'"), rspan)
            elif ref not in parents[n]:
                parents[n].append(ref)
    factor_parents = []
    for st in targets:
        _check_parts(_value_parts(st.rhs, None), catalog, errors)
        read = []
        for ref in names_in(st.rhs):
            if ref.id not in names:
                errors.add(f"undefined name '{ref.id}'{did_you_mean(ref.id, names)}", ref.span)
            elif _generated(ref.id, definition):
                errors.add(_GENERATED_USE.format(ref=ref.id, user="'target +='"), ref.span)
            elif ref.id not in read:
                read.append(ref.id)
        factor_parents.append(tuple(read))
    for n in names:
        t = declared_type.get(n)
        if t is None:
            continue
        for bound in (t.lower, t.upper):
            _check_parts([p for p in walk(bound)] if bound is not None else [], catalog, errors)
            for ref in names_in(bound) if bound is not None else ():
                if ref.id == n:
                    errors.add(f"the bounds of '{n}' depend on '{n}' itself", ref.span)
                elif ref.id not in names:
                    errors.add(f"undefined name '{ref.id}' in the bounds of '{n}'{did_you_mean(ref.id, names)}", ref.span)
                elif not _generated(n, definition) and _generated(ref.id, definition):
                    errors.add(_GENERATED_USE.format(ref=ref.id, user=f"the bounds of '{n}'"), ref.span)
                elif ref.id not in parents[n]:
                    parents[n].append(ref.id)
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
    shapes = Shapes(types, int_inputs, catalog, int_data)
    order = {n: i for i, n in enumerate(names)}
    for n in nx.lexicographical_topological_sort(graph, key=lambda x: order[x]):
        st = definition.get(n) or data_decl[n]
        declared = declared_type.get(n)
        role = ("observed" if n in data_decl else "latent") if st.kind == "sample" else \
            ("input" if st.kind == "data" else "deterministic")
        spec = specs.get(n)
        try:
            vtype = _infer_type(n, st, declared, spec, shapes, types, int_inputs, catalog, observed=n in data_decl)
            _check_bounds(n, vtype, shapes)
            if (too_large := oversized(n, vtype.shape)) is not None:
                raise GenSemanticError(too_large, st.span)
        except GenError as err:
            errors.extend(err)
            types[n] = declared or VarType("real")
            continue
        types[n] = vtype
        graph.nodes[n]["var"] = Variable(n, role, vtype, st.rhs, spec, tuple(parents[n]), st.span, st.scope)
    factors = []
    for st, read in zip(targets, factor_parents):
        try:
            shapes.of(st.rhs)
        except GenError as err:
            errors.extend(err)
        factors.append(Factor(st.rhs, read, st.span))
    errors.raise_if_any()
    return Model(name, graph, span, written, tuple(factors), tuple(shapes.uses.values()))


_GENERATED_USE = ("'{ref}' is generated (drawn or computed per posterior draw, outside the model), so {user} "
                  "cannot use it; only other generated statements can")


def _restricts(declared: VarType | None, support: str) -> bool:
    """Whether a declared type narrows a distribution's ``support`` (a latent's type so declared
    becomes its support; a draw from it would need rejection)."""
    native = {"simplex": "simplex", "corr_cholesky": "cholesky_factor_corr"}.get(support)
    return declared is not None and declared.constrained and not declared.discrete and declared.base != native


def _declared_then_sampled(first: Statement, second: Statement) -> str:
    """A hint for Stan's habit of declaring a parameter and giving its distribution apart."""
    flat = first.kind == "sample" and isinstance(first.rhs, Call) and first.rhs.func == "flat" and not first.rhs.args
    if not (flat and second.kind == "sample" and second.type is None and first.type is not None):
        return ""
    return (f"; the type and the distribution go in one statement: '{second.name}: {first.type} ~ "
            f"{unparse(second.rhs)}'")


def _generated(name: str, definition: dict[str, Statement]) -> bool:
    """Whether ``name`` is defined by a ``generated`` statement."""
    return name in definition and definition[name].scope == "generated"


def _check_parts(parts: list[Expr], catalog: Catalog, errors: _Errors) -> None:
    """Literals that cannot be computed with, and calls of unknown functions (the distribution
    inside ``logpdf(DIST(...), y)`` excepted)."""
    inside_logpdf = {id(p.args[0]) for p in parts if isinstance(p, Call) and p.func == "logpdf" and p.args}
    solvers = {id(v) for p in parts if isinstance(p, Call) and p.func in TAKES_FUNCTION
               for k, v in p.kwargs if k == "solver"}
    for part in parts:
        problem = None if id(part) in solvers else _value_error(part)
        if problem is not None:
            errors.add(problem, part.span)
        if isinstance(part, Call) and part.func not in FUNCTIONS and id(part) not in inside_logpdf:
            errors.add(f"unknown function '{part.func}'{function_hint(part.func, catalog)}", part.span)


def _check_bounds(n: str, vtype: VarType, shapes: Shapes) -> None:
    """A bound broadcasts to the variable's shape, and a lower bound lies below an upper one."""
    for bound in (vtype.lower, vtype.upper):
        if bound is not None and not compatible(vtype.shape, shapes.of(bound)):
            raise GenSemanticError(f"the bound '{unparse(bound)}' of '{n}' has shape {shape_str(shapes.of(bound))}, "
                                   f"which does not broadcast to {shape_str(vtype.shape)}", bound.span)
    if vtype.lower is None or vtype.upper is None:
        return
    try:
        low, high = literal(vtype.lower), literal(vtype.upper)
    except ValueError:
        return
    if low >= high:
        raise GenSemanticError(f"the lower bound of '{n}' ({low:g}) is not below its upper bound ({high:g})",
                               vtype.lower.span)


def _infer_type(n, st, declared, spec, shapes, types, int_inputs, catalog: Catalog, observed: bool = False) -> VarType:
    """The type of ``n``: declared, or inferred from its right-hand side; checked against it.

    A latent's constrained type must lie inside its distribution's support (it becomes the
    support); on data a type's bounds and constraint are checks of the values only."""
    if st.kind == "data":
        return declared
    if st.kind == "let":
        shape = shapes.of(st.rhs)
        return VarType("real", shape)
    call: Call = st.rhs
    if spec.category == "distribution":
        sig = catalog.signatures[spec.name]
        inferred = distribution_shape(spec, call, shapes)
        base = _SUPPORT_BASE[sig.support]
        if declared is None:
            return VarType(base, inferred)
        if not compatible(declared.shape, inferred):
            raise GenSemanticError(f"{spec.name}(...) draws shape {shape_str(inferred)} but '{n}' is "
                                   f"declared {shape_str(declared.shape)}", call.span)
        if sig.support == "any":  # flat(): the declared type is the support
            if declared.discrete:
                raise GenSemanticError(f"a flat prior is for continuous parameters, but '{n}' is declared {declared}",
                                       call.span)
            return declared
        discrete = base == "int"
        if declared.discrete != discrete:
            raise GenSemanticError(f"{spec.name}() draws {'integers' if discrete else 'real numbers'} but '{n}' is "
                                   f"declared {declared}", call.span)
        if declared.base in ("positive", "unit") and base not in (declared.base, "unit") and sig.support != "interval":
            bound = "real<lower=0>" if declared.base == "positive" else "real<lower=0, upper=1>"
            raise GenSemanticError(f"{spec.name}() draws {base} values but '{n}' is declared {declared}; for "
                                   f"{spec.name}() restricted to that support, declare '{n}: {bound}'", call.span)
        if declared.constrained and not observed and not _inside_support(declared, sig.support):
            raise GenSemanticError(f"{spec.name}() draws {_SUPPORT_WORDS[sig.support]}, but '{n}' is declared "
                                   f"{declared}: a constrained type must lie inside its distribution's support",
                                   call.span)
        return declared
    # mechanisms: their declaration's type rule
    mech = spec.name
    declaration = catalog.mechanisms[mech]
    typing = Typing(dict(types), frozenset(int_inputs), catalog, call)
    vtype = declared if declared is not None else declaration.infer_type(n, spec, typing)
    if vtype is not None and vtype.constrained:
        raise GenSemanticError(f"{mech}() cannot model '{n}' of the constrained type {vtype}; a constrained type "
                               f"takes a leaf distribution, or none (a flat prior)", call.span)
    if vtype is None:
        raise GenSemanticError(f"the type of '{n}' cannot be inferred from {mech}(...); write it, "
                               f"e.g. '{n}: real[2] ~ {mech}(...)'", st.span)
    if vtype.base not in declaration.bases:
        raise GenSemanticError(f"{mech}() cannot model '{n}' of type {vtype}; it models "
                               f"{', '.join(declaration.bases)} variables", call.span)
    declaration.check_spec(n, spec, vtype, typing)
    return vtype


def _inside_support(declared: VarType, support: str) -> bool:
    """Whether a constrained type's support lies inside a distribution's ``support``."""
    if support == "real" or {"simplex": "simplex", "corr_cholesky": "cholesky_factor_corr"}.get(support) == declared.base:
        return True
    if support == "positive" and declared.base == "positive_ordered":
        return True
    if declared.base != "real":
        return False
    if support == "interval":
        return declared.lower is not None and declared.upper is not None
    low, high = _literal_or_none(declared.lower), _literal_or_none(declared.upper)
    if support == "positive":
        return low is not None and low >= 0
    if support == "unit":
        return low is not None and low >= 0 and high is not None and high <= 1
    return False


def _literal_or_none(expr):
    if expr is None:
        return None
    try:
        value = literal(expr)
    except ValueError:
        return None
    return value if isinstance(value, (int, float)) else None
