"""Model -> lowered graph. One pass per function:

``bind_dims`` (symbolic dimensions -> integers) -> ``lower`` (each variable -> its node, built by
the mechanism the registry names). :class:`~gendsl.program.Program` assembles the joint entry
points from the lowered graph.

The compiler never special-cases a mechanism: everything a node does goes through
:class:`~gendsl.mechanisms.base.AbstractMechanism`, and it finds mechanisms only in
:data:`gendsl.registry.MECHANISMS`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping

import jax.numpy as jnp

from gendsl.core.model import Factor, Model, Variable
from gendsl.core.resolve import literal
from gendsl.core.types import VarType, bind_dim, oversized
from gendsl.errors import GenDataError
from gendsl.mechanisms import AbstractMechanism, NodeContext
from gendsl.numerics.expr import evaluate
from gendsl.registry import FORMS, MECHANISMS

__all__ = ["LoweredNode", "LoweredFactor", "Lowered", "static_inputs", "bind_dims", "lower"]


@dataclass(frozen=True)
class LoweredNode:
    """A variable after lowering: its bound type and, for ``~`` nodes, its mechanism."""

    var: Variable
    type: VarType
    mechanism: AbstractMechanism | None
    compute: Callable[[dict], object] | None = None  # deterministic nodes: env (one example) -> value

    @property
    def name(self) -> str:
        return self.var.name


@dataclass(frozen=True)
class LoweredFactor:
    """A ``target += EXPR`` term after lowering: ``compute(env)`` is the sum of EXPR for one example."""

    factor: Factor
    compute: Callable[[dict], object]

    @property
    def parents(self) -> tuple[str, ...]:
        return self.factor.parents


@dataclass(frozen=True)
class Lowered:
    """The lowered graph for one binding of the dimensions, nodes in topological order, and the
    ``target +=`` terms."""

    model: Model
    dims: tuple[tuple[str, int], ...]
    nodes: tuple[LoweredNode, ...]
    factors: tuple[LoweredFactor, ...] = ()

    @property
    def dim_values(self) -> dict[str, int]:
        return dict(self.dims)

    def node(self, name: str) -> LoweredNode:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(name)

    @property
    def stochastic(self) -> list[LoweredNode]:
        """Every node drawn by a mechanism or a distribution, ``generated`` ones included."""
        return [n for n in self.nodes if n.mechanism is not None]

    @property
    def modelled(self) -> list[LoweredNode]:
        """The stochastic nodes of the log density: every one but the ``generated`` ones (drawn
        per draw, outside the density: not scored, not trained, no value needed for them)."""
        return [n for n in self.stochastic if n.var.scope != "generated"]


def static_inputs(model: Model) -> list[str]:
    """Scalar ``int`` inputs: bound as Python integers (dimensions, counts)."""
    return [v.name for v in model.by_role("input") if v.type.base == "int" and not v.type.shape]


def bind_dims(model: Model, values: Mapping[str, object]) -> tuple[tuple[str, int], ...]:
    """Read every scalar ``int`` input from ``values`` as a Python int (missing ones stay out)."""
    out = []
    for name in static_inputs(model):
        if name in values:
            raw = values[name]
            try:
                value = int(raw) if getattr(raw, "ndim", 0) == 0 else None
            except (TypeError, ValueError):
                value = None
            if value is None or float(raw) != value:
                raise GenDataError(f"'{name}' must be a single integer, got {raw!r}", model[name].span)
            if value < 0 or (name in model.symbols and value == 0):
                raise GenDataError(f"'{name}' is a dimension and must be positive, got {value}", model[name].span)
            _check_int_bounds(model[name], value)
            out.append((name, value))
    return tuple(out)


def _check_int_bounds(var: Variable, value: int) -> None:
    """A scalar ``int<lower=a, upper=b>`` input with literal bounds holds a value within them."""
    for key, bound in (("lower", var.type.lower), ("upper", var.type.upper)):
        try:
            limit = literal(bound) if bound is not None else None
        except ValueError:
            continue
        if limit is not None and (value < limit if key == "lower" else value > limit):
            raise GenDataError(f"'{var.name}' is declared {var.type} but is {value}", var.span)


def lower(model: Model, dims: Mapping[str, int], placeholder: int | None = None,
          load_source: Callable | None = None) -> Lowered:
    """Lower every variable of ``model`` with its dimensions bound to ``dims``.

    ``placeholder``: value used for dimensions missing from ``dims`` (for ``describe``); when
    None a missing dimension is an error naming the variables that need it. ``load_source``:
    how ``prior(...)`` sources are opened (see :class:`~gendsl.mechanisms.base.NodeContext`).
    """
    missing = sorted(model.symbols - set(dims))
    if missing and placeholder is None:
        raise GenDataError(f"the dimension(s) {', '.join(missing)} are not known: pass them in the data "
                           f"(e.g. {{'{missing[0]}': 8}})", model.span)
    bound = {**{m: placeholder for m in missing}, **dict(dims)}
    statics = {k: v for k, v in bound.items()}
    if not missing:
        _check_static_indices(model, bound)

    def evaluate_one(expr, env):
        return evaluate(expr, {**statics, **env}, FORMS)

    types = {v.name: v.type.bind(bound) for v in model.variables()}
    for var in model.variables() if not missing else ():
        if any(isinstance(d, int) and d <= 0 for d in types[var.name].shape):
            raise GenDataError(f"with {', '.join(f'{k}={v}' for k, v in sorted(dims.items()))}, '{var.name}' "
                               f"({var.type}) would be empty: shape {list(types[var.name].shape)}", var.span)
        if (too_large := oversized(var.name, types[var.name].shape)) is not None:
            raise GenDataError(f"with {', '.join(f'{k}={v}' for k, v in sorted(dims.items()))}, {too_large}", var.span)
    nodes = []
    for var in model.variables():
        mech = None
        if var.stochastic:
            parents = {p: types[p] for p in var.parents if p not in statics}
            given = tuple(var.spec.get("given", ()) or ())
            base = var.spec.get("base")
            if isinstance(base, str):
                given = (*given, base) if base not in given else given
            ctx = NodeContext(var.name, types[var.name], var.spec, parents, given, evaluate_one, var.span,
                              MECHANISMS, load_source, observed=var.role == "observed")
            mech = MECHANISMS.lookup(var.mechanism, var.rhs.span if var.rhs is not None else var.span).build(ctx)
        compute = None
        if var.role == "deterministic":
            def compute(env, rhs=var.rhs):
                return evaluate_one(rhs, env)
        nodes.append(LoweredNode(var, types[var.name], mech, compute))
    factors = tuple(LoweredFactor(f, lambda env, expr=f.expr: jnp.sum(evaluate_one(expr, env))) for f in model.factors)
    return Lowered(model, tuple(sorted(bound.items())), tuple(nodes), factors)


def _check_static_indices(model: Model, dims: Mapping[str, int]) -> None:
    """An ``int`` input that indexes an axis (``x[k]``) or ends a slice (``x[0:K]``) fits the axis."""
    for use in model.index_uses:
        if use.name not in dims:
            continue
        value = dims[use.name] + use.offset
        length = bind_dim(use.dim, dims)
        fits = 0 <= value <= length if use.kind == "stop" else 0 <= value < length
        if not fits:
            shown = f"{use.name} {'+' if use.offset > 0 else '-'} {abs(use.offset)}" if use.offset else use.name
            what, valid = ("slice bound", f"0 to {length}") if use.kind == "stop" else ("index", f"0 to {length - 1}")
            raise GenDataError(f"with {use.name} = {dims[use.name]}, the {what} {shown} = {value} in '{use.text}' is "
                               f"outside {valid} (an axis of length {length})", use.span)
