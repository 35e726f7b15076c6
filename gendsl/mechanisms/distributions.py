"""The leaf distributions: one row each, the language's name and signature beside its numpyro constructor.

A new distribution is one row here (numpyro has almost every one): its parameters in order,
the base type of a draw (``support``) and how the draw's shape follows the arguments (``event``:
``broadcast``, ``drop_last`` for categorical probabilities, ``first`` for a Dirichlet's
concentration, ``mvn``, ``lkj``). The generic leaf tests loop over this table.

Parametrisations follow numpyro, and Stan's where the row has Stan's name: ``inv_gamma(shape, rate)``
is Stan's ``inv_gamma(alpha, beta)`` (beta scales: density ∝ y^-(alpha+1) exp(-beta / y));
``neg_binomial_2(mu, phi)`` has mean mu and variance mu + mu^2 / phi; ``weibull(alpha, sigma)``
has shape alpha and scale sigma; ``von_mises(mu, kappa)`` draws angles in [-pi, pi).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import jax.numpy as jnp
import numpyro.distributions as dist

from gendsl.core.catalog import Table
from gendsl.core.signatures import Param, Signature

__all__ = ["Distribution", "DISTRIBUTIONS"]


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
    _row("lkj_cholesky", ["dim", "concentration"], "corr_cholesky", event="lkj", make=lambda d, conc: dist.LKJCholesky(int(d), conc), integer_args=True),
    _row("lkj_corr_cholesky", ["K", "eta"], "corr_cholesky", event="lkj", make=lambda K, eta: dist.LKJCholesky(int(K), eta), integer_args=True),
]})
