"""The ``prior`` mechanism: one node of a trained program, parameters frozen."""

from __future__ import annotations

import jax.numpy as jnp

from gendsl.errors import GenSemanticError
from gendsl.ir.types import shape_str
from gendsl.mechanisms.base import AbstractMechanism, register
from gendsl.prior import resolve_source

__all__ = ["Prior"]


@register("prior")
class Prior(AbstractMechanism):
    """``x ~ prior("RUN_DIR", node=...)``: the trained node's density and sampler, frozen.

    The node must be a root of its program (its density cannot depend on variables the new model
    does not have). Training the new model leaves the prior unchanged.
    """

    loss_name = "none (frozen)"
    has_params = False

    def __init__(self, ctx):
        super().__init__(ctx)
        source = resolve_source(ctx.spec["run"], ctx.spec.get("node"), ctx.span)
        name = source.node_name()
        lowered = source.program._plan
        node = lowered.node(name)
        if node.mechanism.ctx.parents:
            raise GenSemanticError(f"node '{name}' of the trained model depends on "
                                   f"{', '.join(node.mechanism.ctx.parents)}; a prior must be a node without parents", ctx.span)
        if tuple(node.type.shape) != tuple(ctx.type.shape):
            raise GenSemanticError(f"the trained node '{name}' has shape {shape_str(node.type.shape)} but '{ctx.name}' "
                                   f"has shape {shape_str(ctx.type.shape)}", ctx.span)
        self.inner = node.mechanism
        self.frozen = source.params.get(name, {})
        self.kind = self.inner.kind
        self.sampler_name = self.inner.describe()["sampler"]
        self.source_label = f"prior({source.program.model.name}.{name}: {self.inner.describe()['mechanism']})"

    def init(self, key):
        return {}

    def log_prob(self, params, x, given):
        return self.inner.log_prob(self.frozen, x, {})

    def loss(self, params, x, given, key):
        return jnp.zeros(())

    def sample(self, params, key, n, given):
        return self.inner.sample(self.frozen, key, n, {})

    def support(self, params, given_one):
        return self.inner.support(self.frozen, given_one)

    def cost(self) -> int:
        return self.inner.cost()

    def describe(self) -> dict[str, str]:
        row = super().describe()
        row["mechanism"] = self.source_label
        return row
