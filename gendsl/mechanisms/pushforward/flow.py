"""Pushforward through a bijective flow (``coupling``, ``spline``, ``maf``): exact likelihood.

``x = link(shift + scale * T(z | context))``: the flow ``T`` works in standardised coordinates,
and ``shift`` / ``scale`` are the training data's mean and standard deviation per element (in the
unconstrained space of the link), kept as running moments during training
(:mod:`gendsl.numerics.standardise`). So the flow starts at a Gaussian with the data's scale
whatever units the data come in, and its conditioners, which see their inputs squashed to a few
standard deviations (:func:`~.bijection.squash`), act off the data as they do at its edge.

``log p(x) = log p_base(z) + log|det dz/du| - sum(log scale) + log|det dy/dx|`` with
``u = (y - shift) / scale``, ``y = link^{-1}(x)``, ``z = T^{-1}(u | context)``: one inverse pass per
example. Trained by maximum likelihood. Parameters: ``{"flow": the flow's arrays, "shift": (D,),
"scale": (D,)}``.
"""

from __future__ import annotations

import functools

import equinox as eqx
import jax
import jax.numpy as jnp

from gendsl.errors import GenSemanticError
from gendsl.mechanisms.base import type_size
from gendsl.mechanisms.pushforward.bijection import AbstractBijection
from gendsl.mechanisms.pushforward.bijections import BIJECTIONS
from gendsl.mechanisms.pushforward.node import PushforwardNode, initialise, static_part
from gendsl.numerics.standardise import (
    affine_of,
    identity_affine,
    init_moments,
    log_jacobian,
    standardise,
    unstandardise,
    update_moments,
)

__all__ = ["FlowPushforward", "build_flow"]


def build_flow(name: str, spec, dim: int, cond_dim: int, *, key: jax.Array) -> AbstractBijection:
    """The registered bijection ``name`` for ``dim`` elements and a ``cond_dim`` context."""
    return BIJECTIONS[name].build(spec, dim, cond_dim, key=key)


@functools.lru_cache(maxsize=None)
def _passes(map_spec, dim: int) -> int:
    """Sequential passes of one sample through the flow ``map_spec`` on ``dim`` elements."""
    return static_part(build_flow, (map_spec.name, map_spec, dim, 0)).cost()


class FlowPushforward(PushforwardNode):
    """A pushforward whose map is a registered bijection (see :data:`BIJECTIONS`)."""

    kind = "exact"
    loss_name = "nll"

    def __init__(self, ctx):
        super().__init__(ctx)
        spec = self.map_spec
        if spec["layers"] < 1 or spec.get("bins", 1) < 1 or spec.get("bound", 1.0) <= 0:
            raise GenSemanticError(f"{spec.name}() of '{ctx.name}' needs layers >= 1"
                                   + (", bins >= 1 and bound > 0" if spec.name == "spline" else ""), ctx.span)
        self._recipe = (self.map_spec.name, self.map_spec, self.dim, self.cond_dim)
        self._static = static_part(build_flow, self._recipe)  # the same for every key
        passes = self.cost()
        self.sampler_name = "flow x 1" if passes == 1 else f"flow x {passes} (autoregressive)"

    def bijection(self, params) -> AbstractBijection:
        """The flow of ``params`` (acting on one flat standardised example)."""
        return eqx.combine(params["flow"], self._static)

    def init(self, key):
        """The flow's initial arrays (the identity map) and the identity standardisation."""
        return {"flow": initialise(build_flow, self._recipe, key), **identity_affine((self.dim,))}

    def cost(self) -> int:
        """Passes of the flow per sample (the bijection's own count): 1, or ``dim`` for ``maf``."""
        return self._static.cost()

    @classmethod
    def map_cost(cls, spec, vtype) -> int:
        """:meth:`cost` of a node with ``spec`` and type ``vtype``, from the flow's structure alone."""
        return _passes(spec["map"], type_size(vtype))

    def log_prob(self, params, x, given):
        y, log_det_link = self.from_data(x)
        flow = self.bijection(params)
        z, log_det = jax.vmap(flow.inverse_and_log_det)(standardise(params, y), self.context(given))
        return self.base_log_prob(z, given) + log_det + log_jacobian(params) + log_det_link

    def sample(self, params, key, n, given):
        z = self.base_sample(key, n, given)
        u, _ = jax.vmap(self.bijection(params).transform_and_log_det)(z, self.context(given))
        return self.to_data(unstandardise(params, u))[0]

    # -- training: maximum likelihood under the running standardisation --------------------------
    def init_train_state(self, key, params):
        return {"moments": init_moments((self.dim,)), "affine": {k: params[k] for k in ("shift", "scale")}}

    def train_loss(self, params, state, x, given, key, group="main"):
        """The NLL with the standardisation of every row seen so far; updates the moments."""
        if group != "main":
            return jnp.zeros(()), state
        moments = update_moments(state["moments"], self.from_data(x)[0])
        affine = affine_of(moments)
        return self.loss({**params, **affine}, x, given, key), {"moments": moments, "affine": affine}

    def finalize(self, params, state):
        """The trained flow with the data's standardisation."""
        return {**params, **state["affine"]}

    def loss(self, params, x, given, key):
        if self.base_name is not None:
            raise GenSemanticError(
                f"'{self.ctx.name} ~ pushforward({self.base_name}, {self.map_spec.name}(...))' makes "
                f"{self.ctx.name} = T({self.base_name}) exactly, so observed pairs have no density to fit T by "
                f"maximum likelihood; fit the map with a distribution base (pushforward(normal(0, 1), "
                f"{self.map_spec.name}(...))) and reuse its parameters, or use cnf(..., train=\"flow_matching\"), "
                f"which learns a transport from paired draws", self.ctx.span)
        return -jnp.mean(self.log_prob(params, x, given))
