"""Leaf distributions: the language's distribution names mapped onto numpyro.distributions.

A leaf has no parameters of its own; its arguments are expressions over its parents, evaluated
per example and broadcast to the variable's declared shape.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpyro.distributions as dist

from gendsl.ir.signatures import SIGNATURES
from gendsl.mechanisms.base import AbstractMechanism, Choice, register

__all__ = ["DISTRIBUTIONS", "Leaf"]


def _binomial(n, p):
    return dist.Binomial(total_count=n, probs=p)


#: language name -> constructor taking the arguments in signature order
DISTRIBUTIONS = {
    "normal": dist.Normal,
    "half_normal": dist.HalfNormal,
    "cauchy": dist.Cauchy,
    "half_cauchy": dist.HalfCauchy,
    "student_t": dist.StudentT,
    "exponential": dist.Exponential,
    "gamma": dist.Gamma,
    "inv_gamma": dist.InverseGamma,
    "beta": dist.Beta,
    "lognormal": dist.LogNormal,
    "uniform": dist.Uniform,
    "laplace": dist.Laplace,
    "logistic": dist.Logistic,
    "bernoulli": lambda p: dist.Bernoulli(probs=p),
    "bernoulli_logit": lambda logit: dist.Bernoulli(logits=logit),
    "binomial": _binomial,
    "binomial_logit": lambda n, logit: dist.Binomial(total_count=n, logits=logit),
    "poisson": dist.Poisson,
    "poisson_log": lambda log_rate: dist.Poisson(jnp.exp(log_rate)),
    "negative_binomial": lambda mean, conc: dist.NegativeBinomial2(mean, conc),
    "categorical": lambda probs: dist.Categorical(probs=probs),
    "categorical_logit": lambda logits: dist.Categorical(logits=logits),
    "dirichlet": dist.Dirichlet,
    "multivariate_normal": lambda loc, cov: dist.MultivariateNormal(loc, covariance_matrix=cov),
    "multivariate_normal_cholesky": lambda loc, tril: dist.MultivariateNormal(loc, scale_tril=tril),
    "lkj_cholesky": lambda d, conc: dist.LKJCholesky(int(d), conc),
}


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


@register("leaf")
class Leaf(AbstractMechanism):
    """``x ~ normal(loc, scale)`` and the other leaf distributions.

    The numpyro distribution is built per example from the parents' values; its batch shape is
    broadcast to the variable's shape and summed over in ``log_prob``.
    """

    kind = "exact"
    loss_name = "nll"
    has_params = False

    def __init__(self, ctx):
        super().__init__(ctx)
        self.signature = SIGNATURES[ctx.spec.name]
        self.sampler_name = "exact draw"

    def distribution(self, env: dict) -> dist.Distribution:
        """The numpyro distribution of one example, its batch shape broadcast to the variable's."""
        sig, spec, ev = self.signature, self.ctx.spec, self.ctx.evaluate
        args = [ev(spec[p.name], env) for p in sig.params]
        if spec.name not in ("binomial", "binomial_logit", "lkj_cholesky"):
            args = [_float(a) for a in args]
        d = DISTRIBUTIONS[spec.name](*args)
        event_ndim = len(d.event_shape)
        target = self.ctx.shape[: len(self.ctx.shape) - event_ndim]
        if d.batch_shape != target:
            d = d.expand(target)
        return d

    def init(self, key):
        return {}

    @classmethod
    def static_cost(cls, spec, vtype) -> int:
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
