"""A trained program held in memory as the source of a ``prior(...)`` (the builder API's
``gendsl.prior(prog, params)``), and the choice of the node a prior stands for."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gendsl.core.types import VarType
from gendsl.errors import GenSemanticError, Span

__all__ = ["PriorSource", "pick_node"]


def pick_node(model, node: str | None, span: Span | None = None) -> str:
    """The node of ``model`` a prior stands for: ``node``, or the model's one modelled variable."""
    stochastic = [v.name for v in model.by_role("observed", "latent")]
    if node is not None:
        if node not in stochastic:
            raise GenSemanticError(f"the trained model '{model.name}' has no modelled variable '{node}' "
                                   f"(it has: {', '.join(stochastic)})", span)
        return node
    observed = [v.name for v in model.by_role("observed")]
    choices = observed if len(observed) == 1 else stochastic
    if len(choices) != 1:
        raise GenSemanticError(f"the trained model '{model.name}' has several variables ({', '.join(stochastic)}): "
                               f"name one with node=\"...\"", span)
    return choices[0]


@dataclass(frozen=True, eq=False)
class PriorSource:
    """A trained program and its parameters, used as a prior."""

    program: Any
    params: Any = field(repr=False)
    node: str | None = None

    def node_name(self) -> str:
        return pick_node(self.program.model, self.node)

    @property
    def vtype(self) -> VarType:
        return self.program.model[self.node_name()].type
