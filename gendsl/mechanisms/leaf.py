"""Leaf distributions: the language's distribution names mapped onto numpyro.distributions.

A leaf has no parameters of its own; its arguments are expressions over its parents, evaluated
per example and broadcast to the variable's declared shape.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpyro.distributions as dist

from gendsl.errors import GenRuntimeError
from gendsl.mechanisms.base import AbstractMechanism, Choice
from gendsl.mechanisms.constraints import type_constraint
from gendsl.mechanisms.distributions import DISTRIBUTIONS, make_distribution

__all__ = ["Leaf"]


#: variable base -> a leaf family for it, as the advisor shows it (arguments to fill in)
_FAMILY_OF_BASE = {
    "real": "normal(loc, scale)",
    "positive": "gamma(shape, rate)",
    "unit": "beta(a, b)",
    "int": "poisson(rate)",
    "token": "categorical(probs)",
}


class Leaf(AbstractMechanism):
    """``x ~ normal(loc, scale)`` and the other leaf distributions.

    The numpyro distribution is built per example from the parents' values; its batch shape is
    broadcast to the variable's shape and summed over in ``log_prob``. It offers the capability
    ``"distribution"``: :meth:`distribution` is the numpyro distribution of one example (posterior
    inference scores its elements one by one to sum out discrete latents). A constrained type
    (``mu: ordered[2] ~ normal(0, 5)``, ``sigma: real<lower=0> ~ normal(0, 1)``) restricts the
    support to the type's, as in Stan: the density is the distribution's, unnormalised on that
    support; ``flat()`` has the type's support and log-density 0.
    """

    name = "leaf"
    capabilities = frozenset({"distribution"})
    kind = "exact"
    loss_name = "nll"
    has_params = False

    def __init__(self, ctx):
        super().__init__(ctx)
        self.row = DISTRIBUTIONS[ctx.spec.name]
        self.sampler_name = "exact draw"
        support = self.row.signature.support
        native = {"simplex": "simplex", "corr_cholesky": "cholesky_factor_corr"}.get(support) == ctx.type.base
        #: the support is the declared type's rather than the distribution's (flat, or restricted by the
        #: type of a latent; on data the type is a check of the values)
        restricted = ctx.type.constrained and not native and not ctx.type.discrete and not ctx.observed
        self.typed_support = support == "any" or restricted
        #: flat on an unbounded support (a flat simplex or real<lower=a, upper=b> is uniform: proper)
        self.improper = support == "any" and not ctx.type.compact
        if self.typed_support:  # a density restricted to the type's support, not renormalised (or flat)
            self.sampler_name = "none (use infer)"
            self.kind = "unnormalized"

    def as_written(self, env: dict) -> dist.Distribution:
        """The numpyro distribution of one example, its batch shape that of its arguments."""
        return make_distribution(self.row, self.ctx.spec, lambda e: self.ctx.evaluate(e, env), self.ctx.span)

    def distribution(self, env: dict) -> dist.Distribution:
        """The numpyro distribution of one example, its batch shape broadcast to the variable's."""
        d = self.as_written(env)
        event_ndim = len(d.event_shape)
        target = self.ctx.shape[: len(self.ctx.shape) - event_ndim]
        if d.batch_shape != target:
            d = d.expand(target)
        return d

    def init(self, key):
        return {}

    @classmethod
    def static_cost(cls, spec, vtype, mechanisms) -> int:
        """A leaf draws without any network: 0."""
        return 0

    @classmethod
    def choices(cls, vtype):
        """A fixed distribution of the variable's support: exact, free, nothing learned."""
        family = _FAMILY_OF_BASE.get(vtype.base)
        if family is None:
            return []
        return [Choice(family, cls.kind, 0, conditional=False, learned=False,
                       note="a fixed distribution: its arguments are expressions (of parents), nothing is learned")]

    def log_prob(self, params, x, given):
        def one(xi, gi):
            d = self.distribution(gi)
            lp = d.log_prob(xi)
            return jnp.sum(lp)

        return jax.vmap(one)(x, given)

    def log_prob_elements(self, params, x, given):
        """The distribution's log-density of each independent element of ONE example: its batch shape."""
        return self.distribution(given).log_prob(x)

    def sample(self, params, key, n, given):
        if self.typed_support:
            what = ("an improper flat prior" if self.improper else "a flat prior" if self.row.signature.support == "any" else
                    f"{self.ctx.spec.name}(...) restricted to the support of its type {self.ctx.type}")
            raise GenRuntimeError(f"'{self.ctx.name}' has {what}, which cannot be drawn exactly; "
                                  f"use infer() for its posterior", self.ctx.span)
        keys = jax.random.split(key, n)

        def one(k, gi):
            return self.distribution(gi).sample(k)

        return jax.vmap(one)(keys, given)

    def support(self, params, given_one):
        if self.typed_support:
            return type_constraint(self.ctx.type, lambda e: self.ctx.evaluate(e, given_one))
        return self.distribution(given_one).support

    def describe(self) -> dict[str, str]:
        """The row of the plan, its mechanism left to the right-hand side as written (None)."""
        return {**super().describe(), "mechanism": None}
