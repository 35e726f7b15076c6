"""Adaptive tempered sequential Monte Carlo (blackjax) from a reference to a target, and its log Z.

A population of particles drawn from a normalised reference ``q`` (the energy's base, or a
Gaussian) moves to the unnormalised target ``p`` through the path ``q^(1 - b) p^b``: blackjax's
adaptive tempered SMC picks each next ``b`` so the effective sample size of the reweighted
particles is ``target_ess`` of their number, resamples them (systematic resampling) and moves each
by ``mcmc_steps`` random-walk Metropolis steps (blackjax's additive-step kernel). The proposal's
scale is the particles' weighted standard deviation per coordinate times a factor that follows the
last move's mean acceptance rate (blackjax's ``update_scale_from_acceptance_rate``, target 0.3).
The driver is the loop of blackjax's examples: one ``lax.while_loop`` over tempering steps calling
blackjax's step until ``b = 1`` (or ``max_steps``).

Why a sibling table and not an entry of :data:`~gendsl.numerics.kernels.KERNELS`: a kernel is one
chain's transition ``step(key, state, tuning)`` tuned by the warm-up and run by the chain driver;
SMC has no chain, no warm-up and no step of that shape, but a population, a reference and a
normaliser estimate. Its signature has the kernel category, so ``sampler=smc(...)`` is accepted
wherever an energy takes a kernel.

log Z: the sum over tempering steps of blackjax's ``log_likelihood_increment`` (the log mean
incremental weight), an unbiased estimate of Z on the natural scale. Its standard error comes from
independent repeats (:func:`log_z_estimate`: their mean and standard deviation over ``sqrt(R)``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

from gendsl.core.catalog import Table
from gendsl.core.signatures import Param, Signature
from gendsl.errors import GenDataError

__all__ = ["SMC_SIGNATURE", "SMC_SAMPLERS", "SMCConfig", "SMCResult", "TYPICAL_TEMPERATURES", "TARGET_ACCEPT",
           "smc_config", "config_from_spec", "run_smc", "resample", "log_z_estimate"]

#: ``smc(...)`` in the language
SMC_SIGNATURE = Signature("smc", "kernel", (
        Param("particles", "int", 1000, limit=10**6),
        Param("mcmc_steps", "int", 10, limit=10**4, doc="random-walk moves per tempering step"),
        Param("target_ess", "number", 0.5, doc="effective sample size kept at each tempering step, as a fraction"),
        Param("max_steps", "int", 200, limit=10**4, doc="most tempering steps"),
    ), "adaptive tempered SMC from the base (or a Gaussian) to the target; estimates log Z")

#: the population samplers by name (beside the kernels; see the module docstring)
SMC_SAMPLERS = Table("SMC sampler", {"smc": SMC_SIGNATURE})
#: tempering steps assumed by ``describe`` (the adaptive schedule's length is known only after a run)
TYPICAL_TEMPERATURES = 10
#: mean acceptance rate the random-walk scale is steered towards
TARGET_ACCEPT = 0.3


@dataclass(frozen=True)
class SMCConfig:
    """A checked ``smc(...)``: particles, moves per tempering step, target ESS fraction, most steps."""

    particles: int = 1000
    mcmc_steps: int = 10
    target_ess: float = 0.5
    max_steps: int = 200

    def evaluations(self) -> int:
        """Target evaluations per particle of a typical run: per tempering step the ESS solve, the
        new weights, the move's start and its ``mcmc_steps`` proposals."""
        return TYPICAL_TEMPERATURES * (self.mcmc_steps + 3)

    def describe(self) -> str:
        return f"smc(particles={self.particles}, mcmc_steps={self.mcmc_steps}, target_ess={self.target_ess:g})"


def smc_config(particles: int = 1000, mcmc_steps: int = 10, target_ess: float = 0.5, max_steps: int = 200) -> SMCConfig:
    """A checked :class:`SMCConfig`; :class:`GenDataError` for an option out of range."""
    config = SMCConfig(int(particles), int(mcmc_steps), float(target_ess), int(max_steps))
    if config.particles < 2:
        raise GenDataError(f"smc needs at least 2 particles, got particles={config.particles}")
    if config.mcmc_steps < 1 or config.max_steps < 1:
        raise GenDataError(f"mcmc_steps and max_steps must be at least 1, got {config.mcmc_steps} and {config.max_steps}")
    if not 0.0 < config.target_ess < 1.0:
        raise GenDataError(f"target_ess must lie in (0, 1), got {config.target_ess}")
    return config


def config_from_spec(spec) -> SMCConfig:
    """The :class:`SMCConfig` of a resolved ``sampler=smc(...)`` spec."""
    return smc_config(spec["particles"], spec["mcmc_steps"], spec["target_ess"], spec["max_steps"])


class SMCResult(NamedTuple):
    """A finished run.

    Attributes
    ----------
    particles, weights:
        ``(N, d)`` final particles and their normalised weights ``(N,)``.
    log_z:
        ``()`` estimate of log Z, the target's log normaliser relative to the normalised reference.
    num_steps:
        ``()`` tempering steps taken.
    tempering:
        ``()`` the final exponent ``b`` (1 unless ``max_steps`` ran out).
    acceptance_rate:
        ``()`` mean acceptance rate of the last move.
    """

    particles: jax.Array
    weights: jax.Array
    log_z: jax.Array
    num_steps: jax.Array
    tempering: jax.Array
    acceptance_rate: jax.Array


def _weighted_std(particles: jax.Array, weights: jax.Array) -> jax.Array:
    """``(N, d), (N,) -> (d,)``, floored so a collapsed coordinate still moves."""
    mean = weights @ particles
    var = weights @ (particles - mean) ** 2
    return jnp.sqrt(jnp.maximum(var, jnp.finfo(particles.dtype).eps))


def run_smc(config: SMCConfig, reference_logpdf: Callable, target_logpdf: Callable, key: jax.Array,
            particles: jax.Array) -> SMCResult:
    """Adaptive tempered SMC from ``particles`` (``(N, d)`` draws of the reference) to the target.

    Parameters
    ----------
    reference_logpdf, target_logpdf:
        ``(d,) -> ()``: the reference's normalised log-density and the target's unnormalised one.
    key:
        PRNG key of the whole run.
    """
    # blackjax is imported where it is used: importing it starts the XLA backend, and a multi-host
    # run must call jax.distributed.initialize (the CLI's --coordinator) before that happens
    from blackjax.mcmc import random_walk
    from blackjax.smc import adaptive_tempered, resampling
    from blackjax.smc.base import extend_params
    from blackjax.smc.tuning.from_kernel_info import update_scale_from_acceptance_rate

    move = random_walk.build_additive_step()

    def mcmc_step(key, state, logdensity_fn, sigma):
        return move(key, state, logdensity_fn, random_walk.normal(sigma))

    kernel = adaptive_tempered.build_kernel(reference_logpdf, lambda u: target_logpdf(u) - reference_logpdf(u),
                                            mcmc_step, random_walk.init, resampling.systematic, config.target_ess)
    dtype = particles.dtype
    state = adaptive_tempered.init(particles)._replace(tempering_param=jnp.zeros((), dtype))
    scale = jnp.full((1,), 2.38 / jnp.sqrt(particles.shape[1]), dtype)

    def running(carry):
        _, state, _, _, steps, _ = carry
        return (state.tempering_param < 1.0) & (steps < config.max_steps)

    def tempering_step(carry):
        key, state, log_z, scale, steps, _ = carry
        key, sub = jax.random.split(key)
        sigma = scale * _weighted_std(state.particles, state.weights)
        state, info = kernel(sub, state, config.mcmc_steps, extend_params({"sigma": sigma}))
        accept = jnp.mean(info.update_info.acceptance_rate).astype(dtype)
        scale = update_scale_from_acceptance_rate(scale, accept[None], TARGET_ACCEPT).astype(dtype)
        return key, state, log_z + info.log_likelihood_increment.astype(dtype), scale, steps + 1, accept

    carry = (key, state, jnp.zeros((), dtype), scale, jnp.zeros((), jnp.int32), jnp.zeros((), dtype))
    _, state, log_z, _, steps, accept = jax.lax.while_loop(running, tempering_step, carry)
    return SMCResult(state.particles, state.weights, log_z, steps, state.tempering_param, accept)


def resample(key: jax.Array, result: SMCResult, n: int) -> jax.Array:
    """``n`` equally weighted draws ``(n, d)`` from the final particles (systematic resampling, shuffled)."""
    from blackjax.smc import resampling  # see run_smc

    k_pick, k_order = jax.random.split(key)
    idx = resampling.systematic(k_pick, result.weights, n)
    return result.particles[jax.random.permutation(k_order, idx)]


def log_z_estimate(log_zs: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(R,)`` log Z of independent runs ``-> (mean, standard error)``: the mean of the runs and
    their standard deviation (``ddof=1``) over ``sqrt(R)``; ``R >= 2``."""
    repeats = log_zs.shape[0]
    if repeats < 2:
        raise GenDataError(f"a standard error of log Z needs at least 2 repeats, got {repeats}")
    return jnp.mean(log_zs), jnp.std(log_zs, ddof=1) / jnp.sqrt(repeats)
