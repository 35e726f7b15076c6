"""Parallel tempering (replica exchange) over a geometric temperature ladder; moves by blackjax's MALA.

A ladder of ``K`` replicas targets ``p^beta_k`` with ``beta_k = 1 / T_k`` and temperatures
``T_k = max_temperature^(k / (K - 1))`` (``T_0 = 1``: the target). A round moves every replica by
one step of blackjax's Metropolis-adjusted Langevin kernel (the replicas ``vmap``-ed), then offers
swaps of adjacent replicas ``(k, k + 1)`` for the ``k`` of one parity, even and odd in turn (the
deterministic even-odd scheme of Okabe et al. 2001 and Syed et al. 2022), each accepted with the
Metropolis probability ``min(1, exp((beta_k - beta_{k+1}) (log p(x_{k+1}) - log p(x_k))))``, so the
joint law of the ladder stays invariant and the coldest replica's states are draws of ``p``.
blackjax has no replica exchange: the swap step is this module's, the moves are blackjax's.

Each replica's MALA step size starts at ``step_size * T_k`` (a flatter density takes longer steps)
and is tuned during the ``warmup`` rounds by a Robbins-Monro update of its logarithm towards an
acceptance of 0.574, then frozen. Independent ladders (``chains``) run side by side (``vmap``).

Why a sibling table of :data:`~gendsl.numerics.kernels.KERNELS`: a kernel is one chain's transition;
tempering is a population of chains at several temperatures exchanging states. Its signature has
the kernel category, so ``sampler=tempering(...)`` is accepted wherever an energy takes a kernel.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from gendsl.core.catalog import Table
from gendsl.core.signatures import STEP_LIMIT, Param, Signature
from gendsl.errors import GenDataError

__all__ = ["TEMPERING_SIGNATURE", "TEMPERING_SAMPLERS", "TemperingConfig", "TemperingResult", "config_from_spec",
           "temperatures", "run_tempering", "TARGET_ACCEPT"]

#: ``tempering(...)`` in the language
TEMPERING_SIGNATURE = Signature("tempering", "kernel", (
        Param("chains", "int", 8, limit=10**4, doc="independent ladders; the draws are spread over their coldest replicas"),
        Param("temperatures", "int", 8, limit=256, doc="replicas per ladder (1: MALA chains, no swaps)"),
        Param("max_temperature", "number", 30.0, doc="the hottest replica's temperature (geometric ladder from 1)"),
        Param("steps", "int", 1000, limit=STEP_LIMIT, doc="rounds (a MALA move of every replica, then swaps) kept"),
        Param("warmup", "int", 200, limit=STEP_LIMIT, doc="rounds that tune each replica's step size"),
        Param("step_size", "number", 0.1, doc="first MALA step size at temperature 1 (T times it at temperature T)"),
    ), "parallel tempering: MALA replicas over a geometric temperature ladder, adjacent swaps")

#: the tempering samplers by name (beside the kernels; see the module docstring)
TEMPERING_SAMPLERS = Table("tempering sampler", {"tempering": TEMPERING_SIGNATURE})
#: acceptance rate each replica's MALA step size is tuned to
TARGET_ACCEPT = 0.574


@dataclass(frozen=True)
class TemperingConfig:
    """A checked ``tempering(...)``: ladders, replicas each, hottest temperature, kept and warm-up rounds, step size."""

    chains: int = 8
    temperatures: int = 8
    max_temperature: float = 30.0
    steps: int = 1000
    warmup: int = 200
    step_size: float = 0.1

    def evaluations(self) -> int:
        """Gradient evaluations of one ladder: one per replica per round."""
        return self.temperatures * (self.warmup + self.steps)

    def describe(self) -> str:
        return (f"tempering(chains={self.chains}, temperatures={self.temperatures}, "
                f"max_temperature={self.max_temperature:g}) x {self.warmup}+{self.steps}")


def config_from_spec(spec) -> TemperingConfig:
    """The checked :class:`TemperingConfig` of a resolved ``sampler=tempering(...)`` spec."""
    config = TemperingConfig(int(spec["chains"]), int(spec["temperatures"]), float(spec["max_temperature"]),
                             int(spec["steps"]), int(spec["warmup"]), float(spec["step_size"]))
    if config.chains < 1 or config.steps < 1 or config.warmup < 0:
        raise GenDataError(f"tempering needs chains >= 1, steps >= 1 and warmup >= 0, got {config.chains}, "
                           f"{config.steps} and {config.warmup}")
    if config.temperatures < 1:
        raise GenDataError(f"tempering needs at least 1 temperature, got temperatures={config.temperatures}")
    if not 1.0 < config.max_temperature < np.inf:
        raise GenDataError(f"max_temperature must exceed 1, got {config.max_temperature}")
    if not 0.0 < config.step_size < np.inf:
        raise GenDataError(f"step_size must be a positive number, got {config.step_size}")
    return config


def temperatures(config: TemperingConfig) -> np.ndarray:
    """``(K,)`` the geometric ladder ``1 .. max_temperature``."""
    return np.geomspace(1.0, config.max_temperature, config.temperatures)


class TemperingResult(NamedTuple):
    """A finished run.

    Attributes
    ----------
    draws:
        ``(C, num_samples, d)`` the coldest replica's states, every ``thin``-th round after warm-up.
    swap_rates:
        ``(K - 1,)`` mean acceptance of the swaps offered between replicas ``k`` and ``k + 1`` after warm-up.
    acceptance_rate:
        ``(K,)`` mean MALA acceptance of each replica after warm-up.
    step_sizes:
        ``(C, K)`` the tuned step sizes.
    """

    draws: jax.Array
    swap_rates: jax.Array
    acceptance_rate: jax.Array
    step_sizes: jax.Array


def _swap(key, state, betas, parity):
    """Offer the swaps ``(k, k + 1)`` for ``k % 2 == parity``; states hold the tempered log-density."""
    from blackjax.mcmc import mala

    raw = state.logdensity / betas  # log p of each replica's position
    k = jnp.arange(betas.shape[0] - 1)
    log_ratio = (betas[:-1] - betas[1:]) * (raw[1:] - raw[:-1])
    offered = (k % 2) == parity
    accept = offered & (jnp.log(jax.random.uniform(key, k.shape, raw.dtype)) < log_ratio)
    # replica k takes k + 1's state where pair k swaps, and k + 1 takes k's
    partner = jnp.arange(betas.shape[0])
    partner = partner.at[:-1].set(jnp.where(accept, partner[1:], partner[:-1]))
    partner = partner.at[1:].set(jnp.where(accept, k, partner[1:]))
    position = state.position[partner]
    scale = (betas / betas[partner])
    swapped = mala.MALAState(position, state.logdensity[partner] * scale, state.logdensity_grad[partner] * scale[:, None])
    rate = jnp.where(offered, jnp.minimum(1.0, jnp.exp(log_ratio)), 0.0)
    return swapped, rate, offered


def run_tempering(config: TemperingConfig, logdensity_fn: Callable, key: jax.Array, positions: jax.Array,
                  num_samples: int, thin: int = 1) -> TemperingResult:
    """Warm-up, then ``num_samples * thin`` rounds of ``C`` ladders of ``K`` replicas.

    Parameters
    ----------
    logdensity_fn:
        ``(d,) -> ()``: the target's unnormalised log-density.
    positions:
        ``(C, K, d)`` starts of every replica of every ladder.
    num_samples, thin:
        The coldest replica's state is kept every ``thin``-th round after warm-up, ``num_samples`` times.
    """
    from blackjax.mcmc import mala  # see gendsl.numerics.annealed

    kernel = mala.build_kernel()
    dtype = positions.dtype
    betas = jnp.asarray(1.0 / temperatures(config), dtype)
    total = config.warmup + num_samples * thin

    def move(key, state, beta, step_size):
        return kernel(key, state, lambda u: beta * logdensity_fn(u), step_size)

    def init_ladder(u):
        return jax.vmap(lambda q, b: mala.init(q, lambda v: b * logdensity_fn(v)))(u, betas)

    def round_(carry, xs):
        state, log_step, draws, swaps, offers, accepts = carry
        t, key = xs
        k_move, k_swap = jax.random.split(key)
        state, info = jax.vmap(move)(jax.random.split(k_move, betas.shape[0]), state, betas, jnp.exp(log_step))
        acc = info.acceptance_rate.astype(dtype)
        warm = t < config.warmup
        gain = (t + 1.0) ** -0.6
        log_step = jnp.where(warm, log_step + gain * (acc - TARGET_ACCEPT), log_step)
        state, rate, offered = _swap(k_swap, state, betas, t % 2)
        kept = ~warm
        where = jnp.maximum(t - config.warmup, 0) // thin
        keep = kept & ((t - config.warmup) % thin == thin - 1)
        draws = jnp.where(keep, draws.at[where].set(state.position[0]), draws)
        swaps = swaps + jnp.where(kept, rate, 0.0)
        offers = offers + jnp.where(kept, offered, 0)
        accepts = accepts + jnp.where(kept, acc, 0.0)
        return (state, log_step, draws, swaps, offers, accepts), None

    def ladder(key, u):
        carry = (init_ladder(u), jnp.log(config.step_size / betas).astype(dtype),
                 jnp.zeros((num_samples, u.shape[-1]), dtype), jnp.zeros(betas.shape[0] - 1, dtype),
                 jnp.zeros(betas.shape[0] - 1, jnp.int32), jnp.zeros(betas.shape[0], dtype))
        (_, log_step, draws, swaps, offers, accepts), _ = jax.lax.scan(
            round_, carry, (jnp.arange(total), jax.random.split(key, total)))
        return draws, swaps, offers, accepts, jnp.exp(log_step)

    draws, swaps, offers, accepts, steps = jax.vmap(ladder)(jax.random.split(key, positions.shape[0]), positions)
    kept_rounds = num_samples * thin
    swap_rates = jnp.sum(swaps, 0) / jnp.maximum(jnp.sum(offers, 0), 1)
    return TemperingResult(draws, swap_rates, jnp.sum(accepts, 0) / (kept_rounds * positions.shape[0]), steps)
