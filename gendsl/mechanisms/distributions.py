"""The leaf distributions: one row each, the language's name and signature beside its numpyro constructor.

A new distribution is one row here (numpyro has almost every one): its parameters in order,
the base type of a draw (``support``) and how the draw's shape follows the arguments (``event``:
``broadcast``, ``drop_last`` for categorical probabilities, ``first`` for a Dirichlet's
concentration, ``mvn``, ``lkj``). The generic leaf tests loop over this table.

Parametrisations follow numpyro, and Stan's where the row has Stan's name: ``inv_gamma(shape, rate)``
is Stan's ``inv_gamma(alpha, beta)`` (beta scales: density ∝ y^-(alpha+1) exp(-beta / y));
``neg_binomial_2(mu, phi)`` has mean mu and variance mu + mu^2 / phi; ``weibull(alpha, sigma)``
has shape alpha and scale sigma; ``von_mises(mu, kappa)`` draws angles in [-pi, pi).

``flat()`` is the improper flat prior: its support is the declared type's (``x: real<lower=0>``
alone on a line means ``x: real<lower=0> ~ flat()``). :func:`logpdf` is the language's
``logpdf(DIST(...), y)``: the elementwise log-density of any row.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import jax
import jax.numpy as jnp
import numpyro.distributions as dist
from numpyro.distributions import constraints

from gendsl.core.ast import Call
from gendsl.core.catalog import Table
from gendsl.core.resolve import resolve_call
from gendsl.core.signatures import Param, Signature, Spec
from gendsl.errors import GenDataError

__all__ = ["Distribution", "DISTRIBUTIONS", "make_distribution", "logpdf"]


@dataclass(frozen=True)
class Distribution:
    """A row of the table.

    Attributes
    ----------
    signature:
        Its name, parameters (expressions, in order), support and event rule.
    make:
        ``make(*arguments) -> numpyro.distributions.Distribution`` for one example.
    integer_args:
        Whether its arguments are passed as they are (counts, dimensions) instead of as floats.
    """

    signature: Signature
    make: Callable
    integer_args: bool = False

    @property
    def name(self) -> str:
        return self.signature.name


def _row(name, params, support, event="broadcast", doc="", *, make, integer_args=False) -> Distribution:
    signature = Signature(name, "distribution", tuple(Param(p, "expr") for p in params), doc, support, event)
    return Distribution(signature, make, integer_args)


#: every leaf distribution, by language name
DISTRIBUTIONS = Table("distribution", {row.name: row for row in [
    _row("normal", ["loc", "scale"], "real", make=dist.Normal),
    _row("half_normal", ["scale"], "positive", make=dist.HalfNormal),
    _row("cauchy", ["loc", "scale"], "real", make=dist.Cauchy),
    _row("half_cauchy", ["scale"], "positive", make=dist.HalfCauchy),
    _row("student_t", ["df", "loc", "scale"], "real", make=dist.StudentT),
    _row("exponential", ["rate"], "positive", make=dist.Exponential),
    _row("gamma", ["shape", "rate"], "positive", make=dist.Gamma),
    _row("inv_gamma", ["shape", "rate"], "positive", make=dist.InverseGamma),
    _row("beta", ["a", "b"], "unit", make=dist.Beta),
    _row("lognormal", ["loc", "scale"], "positive", make=dist.LogNormal),
    _row("uniform", ["low", "high"], "interval", make=dist.Uniform),
    _row("laplace", ["loc", "scale"], "real", make=dist.Laplace),
    _row("logistic", ["loc", "scale"], "real", make=dist.Logistic),
    _row("von_mises", ["mu", "kappa"], "interval", make=dist.VonMises),
    _row("weibull", ["alpha", "sigma"], "positive", make=lambda alpha, sigma: dist.Weibull(sigma, alpha)),
    _row("bernoulli", ["p"], "int", make=lambda p: dist.Bernoulli(probs=p)),
    _row("bernoulli_logit", ["logit"], "int", make=lambda logit: dist.Bernoulli(logits=logit)),
    _row("binomial", ["n", "p"], "int", make=lambda n, p: dist.Binomial(total_count=n, probs=p), integer_args=True),
    _row("binomial_logit", ["n", "logit"], "int", make=lambda n, logit: dist.Binomial(total_count=n, logits=logit), integer_args=True),
    _row("poisson", ["rate"], "int", make=dist.Poisson),
    _row("poisson_log", ["log_rate"], "int", make=lambda log_rate: dist.Poisson(jnp.exp(log_rate))),
    _row("negative_binomial", ["mean", "concentration"], "int", make=lambda mean, conc: dist.NegativeBinomial2(mean, conc)),
    _row("neg_binomial_2", ["mu", "phi"], "int", make=lambda mu, phi: dist.NegativeBinomial2(mu, phi)),
    _row("categorical", ["probs"], "int", event="drop_last", make=lambda probs: dist.Categorical(probs=probs)),
    _row("categorical_logit", ["logits"], "int", event="drop_last", make=lambda logits: dist.Categorical(logits=logits)),
    _row("dirichlet", ["alpha"], "simplex", event="first", make=dist.Dirichlet),
    _row("multivariate_normal", ["loc", "cov"], "real", event="mvn", make=lambda loc, cov: dist.MultivariateNormal(loc, covariance_matrix=cov)),
    _row("multivariate_normal_cholesky", ["loc", "scale_tril"], "real", event="mvn", make=lambda loc, tril: dist.MultivariateNormal(loc, scale_tril=tril)),
    _row("multi_normal_cholesky", ["mu", "L"], "real", event="mvn", make=lambda mu, L: dist.MultivariateNormal(mu, scale_tril=L)),
    _row("flat", [], "any", doc="improper flat prior on the declared type's support",
         make=lambda: dist.ImproperUniform(constraints.real, (), ())),
    _row("lkj_cholesky", ["dim", "concentration"], "corr_cholesky", event="lkj", make=lambda d, conc: dist.LKJCholesky(int(d), conc), integer_args=True),
    _row("lkj_corr_cholesky", ["K", "eta"], "corr_cholesky", event="lkj", make=lambda K, eta: dist.LKJCholesky(int(K), eta), integer_args=True),
]})


def _float(x):
    x = jnp.asarray(x)
    return x if jnp.issubdtype(x.dtype, jnp.floating) else x.astype(jnp.result_type(float))


def make_distribution(row: Distribution, spec: Spec, evaluate: Callable, span=None) -> dist.Distribution:
    """The numpyro distribution of ``row`` for a resolved ``spec`` of it, its arguments evaluated
    by ``evaluate(expr) -> array`` (for one example). Arguments known outside their range (a
    negative scale, checked by numpyro when the values are concrete) are a :class:`GenDataError`
    at ``span``."""
    args = [evaluate(spec[p.name]) for p in row.signature.params]
    if not row.integer_args:
        args = [_float(a) for a in args]
    try:
        return row.make(*args)
    except ValueError as err:  # numpyro's argument validation
        raise GenDataError(f"{spec.name}(...) got an argument outside its range: {err} "
                           f"(parameters: {', '.join(p.name for p in row.signature.params)})", span) from None


_SIGNATURES = {name: row.signature for name, row in DISTRIBUTIONS.items()}


def logpdf(call: Call, env: dict, evaluate: Callable) -> jax.Array:
    """``logpdf(DIST(...), y)`` for one example: the elementwise log-density of ``y``, shape the
    distribution's batch shape broadcast with ``y``'s (less its event axes)."""
    dcall, value = call.args
    spec = resolve_call(dcall, _SIGNATURES, "distribution")
    d = make_distribution(DISTRIBUTIONS[spec.name], spec, evaluate)
    return d.log_prob(evaluate(value))
