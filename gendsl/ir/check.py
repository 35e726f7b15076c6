"""Semantic checks: statements -> checked :class:`~gendsl.ir.model.Model`.

One pass per concern, each reporting every problem it finds with its span: definitions
(duplicates, roles), right-hand sides (resolution against the signatures), references
(undefined names with "did you mean", dimensions bound to ``int`` inputs, ``given=``),
the graph (cycles), then types and shapes in topological order.
"""

from __future__ import annotations

from contextvars import ContextVar
from pathlib import Path

import networkx as nx

from gendsl.errors import GenError, GenSemanticError, Span, did_you_mean
from gendsl.ir.ast import BinOp, Call, Expr, Index, ListExpr, Name, Num, Opaque, Str, Unary, names_in, unparse, walk
from gendsl.ir.functions import FUNCTIONS
from gendsl.ir.model import Model, Statement, Variable
from gendsl.ir.resolve import resolve_call
from gendsl.ir.signatures import SIGNATURES, Spec
from gendsl.ir.types import Shape, VarType, broadcast_shapes, shape_str

__all__ = ["check"]

#: which variable bases each mechanism models
MECHANISM_BASES = {
    "factorize": ("real", "token", "int"),
    "pushforward": ("real", "positive", "unit"),
    "evolve": ("real",),
    "energy": ("real", "positive", "unit"),
    "prior": ("real", "positive", "unit", "token", "int"),
}
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

    def __init__(self, types: dict[str, VarType], int_inputs: set[str]):
        self.types = types
        self.int_inputs = int_inputs

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
                sig = SIGNATURES.get(e.func)
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
    sig = SIGNATURES[spec.name]
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
        d = spec["dim"]
        if isinstance(d, Num) and isinstance(d.value, int):
            return (d.value, d.value)
        if isinstance(d, Name) and d.id in shapes.int_inputs:
            return (d.id, d.id)
        raise GenSemanticError("lkj_cholesky(dim, ...) needs an integer dimension", call.span)
    raise AssertionError(sig.event)


def _compatible(declared: Shape, inferred: Shape) -> bool:
    try:
        return broadcast_shapes(declared, inferred) == tuple(declared)
    except ValueError:
        return False


#: the files whose ``prior(...)`` types are being read, outermost first (to refuse cycles)
_PRIOR_CHAIN: ContextVar[tuple[str, ...]] = ContextVar("gendsl_prior_chain", default=())


def _anchor_priors(spec: Spec, file: str | None) -> Spec:
    """``spec`` with the folder of every ``prior("RUN")`` in it made absolute where one is found now,
    so the model lowers the same run whatever the working directory is later."""
    options = dict(spec.options)
    for key, value in spec.options.items():
        if isinstance(value, Spec):
            options[key] = _anchor_priors(value, file)
    if spec.name == "prior" and isinstance(options.get("run"), str):
        from gendsl.prior import locate_run

        options["run"] = locate_run(options["run"], file)
    return spec if options == spec.options else Spec(spec.name, spec.category, options)


def _prior_type(spec: Spec, call: Call) -> VarType:
    """The type of ``prior("RUN")`` read from the run folder; a folder that cannot be read, or
    one that leads back to a file being read, is a :class:`GenSemanticError` at the call."""
    from gendsl.prior import source_type

    file = call.span.file or "<string>"
    here = str(Path(file).resolve()) if Path(file).is_file() else file
    chain = _PRIOR_CHAIN.get()
    if here in chain:
        raise GenSemanticError(f"prior(\"{spec['run']}\") leads back to {file}: runs that are priors of "
                               f"each other form a cycle; write the type of the variable to break it", call.span)
    token = _PRIOR_CHAIN.set((*chain, here))
    try:
        return source_type(spec["run"], spec.get("node"), call.span)
    except (OSError, ValueError, TypeError, AttributeError, KeyError) as err:  # a damaged run folder
        raise GenSemanticError(f"cannot read the run \"{spec['run']}\" for prior(...): "
                               f"{type(err).__name__}: {err}", call.span) from None
    finally:
        _PRIOR_CHAIN.reset(token)


def check(name: str, statements: list[Statement], span: Span | None = None) -> Model:
    """Check ``statements`` of the model ``name``; return the :class:`Model` or raise.

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
            sig = SIGNATURES.get(rhs.func)
            if sig is None or sig.category not in ("distribution", "mechanism"):
                known = [s for s, g in SIGNATURES.items() if g.category in ("distribution", "mechanism")]
                what = f"'{rhs.func}' is a {sig.category}, not a distribution or mechanism" if sig else \
                    f"unknown distribution or mechanism '{rhs.func}'{did_you_mean(rhs.func, known)}"
                errors.add(what, rhs.span)
                continue
            try:
                spec = _anchor_priors(resolve_call(rhs), rhs.span.file)
            except GenError as err:
                errors.extend(err)
                continue
            specs[n] = spec
            given = set(spec.get("given", ()) or ())
            allowed_self = spec.name == "energy" and n not in given
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
                sig = SIGNATURES.get(fn.func)
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
    shapes = _Shapes(types, int_inputs)
    order = {n: i for i, n in enumerate(names)}
    for n in nx.lexicographical_topological_sort(graph, key=lambda x: order[x]):
        st = definition.get(n) or data_decl[n]
        declared = declared_type.get(n)
        role = ("observed" if n in data_decl else "latent") if st.kind == "sample" else \
            ("input" if st.kind == "data" else "deterministic")
        spec = specs.get(n)
        try:
            vtype = _infer_type(n, st, declared, spec, shapes, types, int_inputs)
        except GenError as err:
            errors.extend(err)
            types[n] = declared or VarType("real")
            continue
        types[n] = vtype
        graph.nodes[n]["var"] = Variable(n, role, vtype, st.rhs, spec, tuple(parents[n]), st.span)
    errors.raise_if_any()
    return Model(name, graph, span, tuple(statements))


def _infer_type(n, st, declared, spec, shapes, types, int_inputs) -> VarType:
    if st.kind == "data":
        return declared
    if st.kind == "let":
        shape = shapes.of(st.rhs)
        return VarType("real", shape)
    call: Call = st.rhs
    if spec.category == "distribution":
        sig = SIGNATURES[spec.name]
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
    # mechanisms
    mech = spec.name
    vtype = declared
    if vtype is None and mech == "pushforward":
        base = spec["base"]
        if isinstance(base, str):
            vtype = VarType("real", types[base].shape)
        elif isinstance(base, Spec) and base.category == "distribution":
            shape = _distribution_shape(base, call.args[0] if call.args else call, shapes)
            vtype = VarType("real", shape) if shape else None
    if vtype is None and mech == "prior":
        vtype = _prior_type(spec, call)
    if vtype is None:
        raise GenSemanticError(f"the type of '{n}' cannot be inferred from {mech}(...); write it, "
                               f"e.g. '{n}: real[2] ~ {mech}(...)'", st.span)
    if vtype.base not in MECHANISM_BASES[mech]:
        raise GenSemanticError(f"{mech}() cannot model '{n}' of type {vtype}; it models "
                               f"{', '.join(MECHANISM_BASES[mech])} variables", call.span)
    if mech == "energy" and not isinstance(spec["E"], (Spec, Opaque)):
        # an energy expression must be a scalar
        local = dict(types)
        local[n] = vtype
        e_shape = _Shapes(local, int_inputs).of(spec["E"])
        if e_shape not in ((), (1,)):
            raise GenSemanticError(f"the energy of '{n}' must be a scalar, got shape {shape_str(e_shape)}", spec["E"].span)
    if mech == "pushforward" and isinstance(spec["base"], str) and types[spec["base"]].shape != vtype.shape:
        raise GenSemanticError(f"the base '{spec['base']}' of '{n}' has shape {shape_str(types[spec['base']].shape)} "
                               f"but '{n}' has shape {shape_str(vtype.shape)}", call.span)
    return vtype
