"""The graph IR: a :class:`Model` is a networkx DiGraph of typed :class:`Variable` nodes.

Both front ends (the ``.gen`` parser and the builder API) produce :class:`Statement` lists;
:func:`gendsl.core.check.check` turns them into a checked :class:`Model`, in which every variable
has a role, a resolved type (shape inferred), its parents and, for ``~`` statements, the
resolved :class:`~gendsl.core.signatures.Spec` of its right-hand side.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator

import networkx as nx

from gendsl.core.ast import Expr
from gendsl.core.signatures import Spec
from gendsl.core.types import VarType
from gendsl.errors import Span

__all__ = ["Statement", "Variable", "Factor", "IndexUse", "Model", "ROLES"]

#: input: a value supplied at fit/infer time and not modelled; observed: ``data`` and ``~``;
#: latent: ``~`` only; deterministic: ``=``.
ROLES = ("input", "observed", "latent", "deterministic")


@dataclass(frozen=True)
class Statement:
    """One line of a model, as written. ``kind`` is "data", "sample", "let", "target"
    (``target += EXPR``; its ``name`` is "target") or "fn" (``fn NAME(ARGS) = EXPR``: ``params``
    are the argument names, ``rhs`` the body). ``scope`` is "" for a statement of the model,
    "local" for ``local NAME = EXPR`` (a "let" whose value is not stored with the draws) and
    "generated" for ``generated NAME ~ ...`` / ``generated NAME = ...`` (drawn or computed per
    posterior draw, outside the log density)."""

    kind: str
    name: str
    type: VarType | None = None
    rhs: Expr | None = None
    span: Span = field(default_factory=Span, compare=False)
    type_span: Span | None = field(default=None, compare=False)
    params: tuple[str, ...] = ()
    scope: str = ""


@dataclass(frozen=True)
class Variable:
    """A checked node of the graph.

    Attributes
    ----------
    name, role:
        The variable's name and its role (see :data:`ROLES`).
    type:
        The resolved type; shape dimensions may still be names of ``int`` inputs.
    rhs:
        The right-hand side as written (a call for ``~``, an expression for ``=``).
    spec:
        For ``~``: the resolved call (a distribution or mechanism with every option).
    parents:
        Variables this one depends on, in order of first mention.
    scope:
        "" (a quantity of the model), "local" (a deterministic quantity not stored with the
        draws) or "generated" (outside the log density: drawn or computed per posterior draw).
    """

    name: str
    role: str
    type: VarType
    rhs: Expr | None
    spec: Spec | None
    parents: tuple[str, ...]
    span: Span = field(compare=False)
    scope: str = ""

    @property
    def mechanism(self) -> str:
        """Registry name of what produces this variable: a mechanism, "leaf", "input" or "deterministic"."""
        if self.role == "input":
            return "input"
        if self.role == "deterministic":
            return "deterministic"
        assert self.spec is not None
        return self.spec.name if self.spec.category == "mechanism" else "leaf"

    @property
    def stochastic(self) -> bool:
        return self.role in ("observed", "latent")


@dataclass(frozen=True)
class Factor:
    """A ``target += EXPR`` statement: the sum of ``expr`` is added to the model's log density.

    Attributes
    ----------
    expr:
        The expression (any shape; its elements are summed).
    parents:
        The variables it reads, in order of first mention.
    """

    expr: Expr
    parents: tuple[str, ...]
    span: Span = field(compare=False)

    @property
    def label(self) -> str:
        """How messages name it: ``target (line 7)``."""
        return f"target (line {self.span.line})" if self.span.line else "target"


@dataclass(frozen=True)
class IndexUse:
    """Integer data that index an axis (``theta[group]``), or an ``int`` input that ends a slice
    (``x[0:K]``): checked against the axis length when the data are bound.

    Attributes
    ----------
    name:
        The data variable (``kind="index"``) or ``int`` input (``kind="stop"``).
    dim:
        The length of the indexed axis (an integer or the name of an ``int`` input).
    text:
        The indexing expression as written, for messages.
    """

    name: str
    dim: object
    text: str
    span: Span = field(compare=False)
    kind: str = "index"
    offset: int = 0  # ``g - 1`` indexes with the values of g minus 1


@dataclass
class Model:
    """A checked model: its name, the source it came from, the variable graph, the
    ``target +=`` terms and the data-dependent indices to check when data arrive."""

    name: str
    graph: nx.DiGraph
    span: Span = field(default_factory=Span)
    statements: tuple[Statement, ...] = ()
    factors: tuple[Factor, ...] = ()
    index_uses: tuple[IndexUse, ...] = ()

    def __getitem__(self, name: str) -> Variable:
        return self.graph.nodes[name]["var"]

    def __contains__(self, name: str) -> bool:
        return name in self.graph

    def variables(self) -> Iterator[Variable]:
        """Variables in a topological order (ties broken by order of declaration)."""
        order = {n: i for i, n in enumerate(self.graph.nodes)}
        for name in nx.lexicographical_topological_sort(self.graph, key=lambda n: order[n]):
            yield self.graph.nodes[name]["var"]

    def by_role(self, *roles: str) -> list[Variable]:
        return [v for v in self.variables() if v.role in roles]

    @property
    def symbols(self) -> set[str]:
        """Names of ``int`` inputs used as dimensions."""
        out: set[str] = set()
        for v in self.variables():
            out |= v.type.symbols
        return out

    def __repr__(self) -> str:
        return f"Model({self.name!r}, {list(self.graph.nodes)})"
