"""Leaf distributions: the language's distribution names mapped onto numpyro.distributions.

A leaf has no parameters of its own; its arguments are expressions over its parents, evaluated
per example and broadcast to the variable's declared shape.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpyro.distributions as dist

from gendsl.mechanisms.base import AbstractMechanism, Choice
from gendsl.mechanisms.distributions import DISTRIBUTIONS

__all__ = ["Leaf"]


#: variable base -> a leaf family for it, as the advisor shows it (arguments to fill in)
_FAMILY_OF_BASE = {
    "real": "normal(loc, scale)",
    "positive": "gamma(shape, rate)",
    "unit": "beta(a, b)",
    "int": "poisson(rate)",
    "token": "categorical(probs)",
}


def _float(x):
    x = jnp.asarray(x)
    return x if jnp.issubdtype(x.dtype, jnp.floating) else x.astype(jnp.result_type(float))


class Leaf(AbstractMechanism):
    """``x ~ normal(loc, scale)`` and the other leaf distributions.

    The numpyro distribution is built per example from the parents' values; its batch shape is
    broadcast to the variable's shape and summed over in ``log_prob``. It offers the capability
    ``"distribution"``: :meth:`distribution` is the numpyro distribution of one example (posterior
    inference scores its elements one by one to sum out discrete latents).
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

    def as_written(self, env: dict) -> dist.Distribution:
        """The numpyro distribution of one example, its batch shape that of its arguments."""
        row, spec, ev = self.row, self.ctx.spec, self.ctx.evaluate
        args = [ev(spec[p.name], env) for p in row.signature.params]
        if not row.integer_args:
            args = [_float(a) for a in args]
        return row.make(*args)

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

    def sample(self, params, key, n, given):
        keys = jax.random.split(key, n)

        def one(k, gi):
            return self.distribution(gi).sample(k)

        return jax.vmap(one)(keys, given)

    def support(self, params, given_one):
        return self.distribution(given_one).support

    def describe(self) -> dict[str, str]:
        """The row of the plan, its mechanism left to the right-hand side as written (None)."""
        return {**super().describe(), "mechanism": None}
