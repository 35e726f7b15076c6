"""Sampling an energy node by tempered SMC (``sampler=smc(...)``) and its log normaliser.

The reference the particles start from, in the node's sampling coordinates ``q`` of shape
``(dim,)``: the ``base=`` mechanism when there is one (its draws and its log-density with the
log-Jacobian of the map to ``q``, there the unconstrained ``u``), else a standard normal. For a
network energy ``q`` is ``u`` standardised by the data's per-coordinate mean and sd (the moments
:func:`update_moments` gathers during ``fit``; stored as ``params["reference"]``), so the
standard normal is the Gaussian fitted to the data. The target is the node's unnormalised
log-density in ``q`` (``-E``, plus the base, with the log-Jacobian of ``q -> x``). Draws are the final particles
resampled to the number asked; log Z is that of ``exp(-E)`` (times the base), since the reference
is normalised.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.scipy.stats import norm

from gendsl.numerics import smc

__all__ = ["reference", "run", "sample", "log_normaliser", "init_moments", "update_moments", "fitted_reference"]


def reference(node, params):
    """``(draw(key, n) -> (n, dim), logpdf(q) -> ())`` of the node's reference in ``q``."""
    if node.base is not None:
        base_params = params.get("base", {})

        def logpdf(u):
            x = node.transform(u.reshape(node.u_shape))
            jacobian = jnp.sum(node.transform.log_abs_det_jacobian(u.reshape(node.u_shape), x))
            return node.base.log_prob(base_params, x[None], {})[0] + jacobian

        return (lambda key, n: node._unconstrain(params, node.base.sample(base_params, key, n, {}))), logpdf
    # a network energy samples in its data's standardised coordinates, an expression in u itself

    def draw(key, n):
        return jax.random.normal(key, (n, node.dim), jnp.result_type(float))

    return draw, lambda q: jnp.sum(norm.logpdf(q))


def run(node, params, key: jax.Array, particles: int | None = None) -> smc.SMCResult:
    """One SMC run of ``particles`` (default ``node.smc.particles``) from the reference to the node's density."""
    draw, logpdf = reference(node, params)
    k_start, k_run = jax.random.split(key)
    particles = draw(k_start, particles or node.smc.particles)
    return smc.run_smc(node.smc, logpdf, lambda u: node._log_density_u(params, u, {}), k_run, particles)


def sample(node, params, key: jax.Array, n: int) -> tuple[jax.Array, dict]:
    """``(n, dim)`` unconstrained draws and ``{"log_z", "tempering_steps", "acceptance_rate"}`` of the run."""
    k_run, k_pick = jax.random.split(key)
    result = run(node, params, k_run, max(node.smc.particles, n))  # n draws: at least n particles
    info = {"log_z": result.log_z, "tempering_steps": result.num_steps, "acceptance_rate": result.acceptance_rate}
    return smc.resample(k_pick, result, n), info


def log_normaliser(node, params, key: jax.Array, repeats: int) -> tuple[jax.Array, jax.Array]:
    """log Z of the node's density and its standard error over ``repeats`` independent runs."""
    log_zs = jax.vmap(lambda k: run(node, params, k).log_z)(jax.random.split(key, repeats))
    return smc.log_z_estimate(log_zs)


def init_moments(dim: int) -> dict:
    """Empty running sums for the data's per-coordinate mean and variance in ``u``."""
    return {"count": jnp.zeros(()), "sum": jnp.zeros(dim), "sum_sq": jnp.zeros(dim)}


def update_moments(moments: dict, u: jax.Array) -> dict:
    """The sums with a batch ``(n, dim)`` of training data in ``u`` added."""
    u = jax.lax.stop_gradient(u)
    return {"count": moments["count"] + u.shape[0], "sum": moments["sum"] + jnp.sum(u, 0),
            "sum_sq": moments["sum_sq"] + jnp.sum(u ** 2, 0)}


def fitted_reference(moments: dict) -> dict:
    """``{"loc", "scale"}`` (each ``(dim,)``) of the Gaussian fitted to the gathered data; a standard
    normal before any data."""
    count = jnp.maximum(moments["count"], 1.0)
    loc = moments["sum"] / count
    var = moments["sum_sq"] / count - loc ** 2
    seen = moments["count"] > 1
    return {"loc": jnp.where(seen, loc, 0.0), "scale": jnp.where(seen, jnp.sqrt(jnp.maximum(var, 1e-6)), 1.0)}
