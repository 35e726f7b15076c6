"""The log marginal likelihood ``log p(data)`` of a Bayesian model, by tempered SMC from the posterior's
Gaussian approximation.

After the chains have run, their unconstrained draws ``(n, d)`` give a Gaussian reference
``N(mean, WIDEN * cov)`` (widened so that its tails cover the posterior's; the covariance is
shrunk towards its diagonal when draws are few for the dimension). Adaptive tempered SMC
(:mod:`gendsl.numerics.smc`, blackjax) moves particles from that normalised reference to the
unnormalised posterior ``p(data, u)``: the log joint of :class:`~gendsl.inference.joint.LogJoint`,
with the log-Jacobians of the constraint transforms and discrete latents summed out. Its log
normaliser is ``log p(data)``, whatever the model's priors (an improper flat prior gives a
marginal likelihood only up to its arbitrary constant, as always). Independent repeats give the
standard error (:func:`gendsl.numerics.smc.log_z_estimate`).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.stats import multivariate_normal

from gendsl.inference.joint import LogJoint
from gendsl.numerics import smc

__all__ = ["MarginalLikelihood", "WIDEN", "gaussian_reference", "log_marginal_likelihood"]

#: the reference's covariance is the draws' times this
WIDEN = 2.0


class MarginalLikelihood(NamedTuple):
    """``log p(data)``: the estimate, its standard error, and how it was made."""

    value: float
    se: float
    repeats: int
    particles: int
    tempering_steps: float

    def as_dict(self) -> dict:
        return {"value": self.value, "se": self.se, "repeats": self.repeats, "particles": self.particles,
                "tempering_steps": self.tempering_steps}


def gaussian_reference(positions: np.ndarray, widen: float = WIDEN) -> tuple[np.ndarray, np.ndarray]:
    """``(mean (d,), cov (d, d))`` of a Gaussian fitted to draws ``(n, d)``, widened by ``widen``;
    with fewer than ``10 d`` draws the covariance is shrunk towards its diagonal (weight ``d / (n/10)``
    on the diagonal, capped at 1)."""
    positions = np.asarray(positions, np.float64)
    n, d = positions.shape
    mean = positions.mean(axis=0)
    cov = np.atleast_2d(np.cov(positions, rowvar=False))
    shrink = min(1.0, 10.0 * d / n)
    cov = (1.0 - shrink) * cov + shrink * np.diag(np.diag(cov))
    scale = np.maximum(np.diag(cov), 1e-12)
    return mean, widen * (cov + 1e-9 * np.diag(scale))


def log_marginal_likelihood(joint: LogJoint, positions: np.ndarray, arrays, params, key: jax.Array, *,
                            particles: int = 2000, repeats: int = 4) -> MarginalLikelihood:
    """``log p(data)`` of ``joint`` from posterior draws ``positions`` ``(n, d)`` in its unconstrained
    coordinates (see the module): ``repeats`` independent SMC runs of ``particles`` each."""
    mean, cov = (jnp.asarray(a) for a in gaussian_reference(positions))
    chol = jnp.linalg.cholesky(cov)
    config = smc.smc_config(particles=particles)

    def reference_logpdf(z):
        return multivariate_normal.logpdf(z, mean, cov)

    def target_logpdf(z):
        return joint.logdensity(z, arrays, params)

    @jax.jit
    def one(key):
        k_start, k_run = jax.random.split(key)
        start = mean + jax.random.normal(k_start, (particles, mean.shape[0]), mean.dtype) @ chol.T
        result = smc.run_smc(config, reference_logpdf, target_logpdf, k_run, start)
        return result.log_z, result.num_steps

    runs = [one(k) for k in jax.random.split(key, repeats)]
    log_zs = jnp.stack([r[0] for r in runs])
    value, se = smc.log_z_estimate(log_zs)
    return MarginalLikelihood(float(value), float(se), repeats, particles,
                              float(np.mean([int(r[1]) for r in runs])))
