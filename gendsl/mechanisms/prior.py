"""The ``prior`` mechanism: one node of a trained program, parameters frozen."""

from __future__ import annotations

import jax.numpy as jnp

from gendsl.core.signatures import Param, Signature, Spec
from gendsl.core.types import VarType, shape_str
from gendsl.errors import GenSemanticError
from gendsl.mechanisms.base import AbstractMechanism

__all__ = ["Prior"]

#: ``prior(...)`` in the language
PRIOR_SIGNATURE = Signature("prior", "mechanism", (Param("run", "source"), Param("node", "str", None)),
                            "the distribution a finished `gendsl fit` run learned")


class Prior(AbstractMechanism):
    """``x ~ prior("RUN_DIR", node=...)``: the trained node's density and sampler, frozen.

    The node must be a root of its program (its density cannot depend on variables the new model
    does not have). Training the new model leaves the prior unchanged. Where sources come from is
    not this module's business: the check asks the catalog's source resolver for the type, and
    the node asks ``ctx.load_source`` for the trained node and its parameters.
    """

    name = "prior"
    signature = PRIOR_SIGNATURE
    bases = ("real", "positive", "unit", "token", "int")
    loss_name = "none (frozen)"
    has_params = False

    @classmethod
    def anchor(cls, spec: Spec, file: str | None, catalog) -> Spec:
        """The run folder made absolute where the resolver finds it now."""
        if catalog.sources is None:
            return spec
        anchored = catalog.sources.anchor(spec["run"], file)
        return spec if anchored == spec["run"] else Spec(spec.name, spec.category, {**spec.options, "run": anchored})

    @classmethod
    def infer_type(cls, name: str, spec: Spec, typing) -> VarType | None:
        """The type of the trained variable, from the source resolver."""
        if typing.catalog.sources is None:
            raise GenSemanticError("prior(...) needs trained runs, and this check was given no way to read them",
                                   typing.call.span)
        return typing.catalog.sources.type_of(spec["run"], spec.get("node"), typing.call.span)

    def __init__(self, ctx):
        super().__init__(ctx)
        if ctx.load_source is None:
            raise GenSemanticError(f"prior(...) of '{ctx.name}' needs trained runs, and this compilation was "
                                   f"given no way to read them", ctx.span)
        node, self.frozen, model_name = ctx.load_source(ctx.spec["run"], ctx.spec.get("node"), ctx.span)
        if node.ctx.parents:
            raise GenSemanticError(f"node '{node.ctx.name}' of the trained model depends on "
                                   f"{', '.join(node.ctx.parents)}; a prior must be a node without parents", ctx.span)
        if tuple(node.ctx.shape) != tuple(ctx.shape):
            raise GenSemanticError(f"the trained node '{node.ctx.name}' has shape {shape_str(node.ctx.shape)} but "
                                   f"'{ctx.name}' has shape {shape_str(ctx.shape)}", ctx.span)
        self.inner = node
        self.kind = self.inner.kind
        self.sampler_name = self.inner.describe()["sampler"]
        self.source_label = f"prior({model_name}.{node.ctx.name}: {self.inner.describe()['mechanism'] or node.ctx.spec.name})"

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
