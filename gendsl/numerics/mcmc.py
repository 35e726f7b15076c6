"""The pure multi-chain MCMC driver over the kernels of :mod:`gendsl.numerics.kernels`.

The driver is a set of pure functions of explicit keys, meant to be traced inside ONE ``jax.jit``
by the caller. Each chain is ONE ``lax.scan`` over warm-up and sampling transitions (the kernel is
traced once; adaptation runs under ``lax.cond`` on the transition index), the chains ``vmap``-ed
inside each transition or run one after the other (``lax.map``): :func:`run_chains` (kept draws
and statistics), :func:`final_positions` (only the last state of many chains: sampling an
energy) and :func:`short_run` (a few fixed-parameter steps: contrastive-divergence negatives).
"""

from __future__ import annotations

import math
from typing import Callable

import jax
import jax.numpy as jnp

from gendsl.errors import GenDataError
from gendsl.numerics.adaptation import as_array
from gendsl.numerics.kernels import ChainStats, KernelConfig, build_step, init_state
from gendsl.numerics.warmup import adaptation, schedule

__all__ = ["uniform_starts", "transition_keys", "report_every", "run_chains", "final_positions", "short_run"]


def uniform_starts(key: jax.Array, shape: tuple[int, ...], dtype=None, radius: float = 2.0) -> jax.Array:
    """Starting points uniform in ``[-radius, radius]`` (Stan's initialisation), of ``shape``.

    Drawn as one flat vector then reshaped: a multi-dimensional threefry draw compiles far more
    slowly under ``jax.enable_x64``.
    """
    dtype = dtype or jnp.result_type(float)
    return jax.random.uniform(key, (math.prod(shape),), dtype, -radius, radius).reshape(shape)



def _chain(config: KernelConfig, logdensity_fn: Callable, dim: int, dtype, num_warmup: int, num_samples: int,
           thin: int, keep: bool, report: Callable | None = None):
    """``(init, transition)`` of ONE chain: ``init(position, chain_id)`` and the ``lax.scan`` body
    over transitions ``(t, key, (stage, window_end))``. The adaptation runs under ``lax.cond`` on
    the transition index, so it costs nothing after warm-up, and the kernel is traced once. With
    ``report``, the carry counts each chain's divergences after warm-up for :func:`_reporting`."""
    step = build_step(config, logdensity_fn)
    adapt_init, adapt_update, adapt_final = adaptation(config, dim, dtype, num_warmup)
    tunes = config.kernel.tunes_step_size and num_warmup > 0

    def init(position, chain_id):
        draws = None
        if keep:
            draws = (jnp.zeros((num_samples, dim), dtype),
                     ChainStats(jnp.zeros(num_samples, bool), jnp.zeros(num_samples, jnp.int32),
                                jnp.zeros(num_samples, jnp.int32), jnp.zeros(num_samples, dtype),
                                jnp.zeros(num_samples, dtype), jnp.zeros(num_samples, dtype)))
        progress = (chain_id, jnp.zeros((), jnp.int32)) if report is not None else None
        return init_state(logdensity_fn, position), adapt_init(position), draws, progress

    def store(draws, t, state, stats):
        where, (pos, acc) = (t - num_warmup) // thin, draws
        return (pos.at[where].set(state.position),
                ChainStats(acc.is_divergent.at[where].set(acc.is_divergent[where] | stats.is_divergent),
                           acc.tree_depth.at[where].max(stats.tree_depth),
                           acc.num_steps.at[where].add(stats.num_steps.astype(jnp.int32)),
                           acc.acceptance_rate.at[where].add(stats.acceptance_rate.astype(dtype) / thin),
                           acc.energy.at[where].set(jnp.asarray(stats.energy, dtype)),
                           acc.logdensity.at[where].set(state.logdensity.astype(dtype))))

    def transition(carry, xs):
        state, adapt, draws, progress = carry
        t, key, (stage, window_end) = xs
        state, stats = step(key, state, adapt.tuning)
        if tunes:
            adapt = jax.lax.cond(t < num_warmup,
                                 lambda a: adapt_update(a, stage, window_end, state.position, state.logdensity_grad,
                                                      stats.acceptance_rate),
                                 lambda a: a, adapt)
            adapt = jax.lax.cond(t == num_warmup - 1, lambda a: a._replace(tuning=adapt_final(a)), lambda a: a, adapt)
        if keep:
            draws = jax.lax.cond(t >= num_warmup, lambda d: store(d, t, state, stats), lambda d: d, draws)
        if progress is not None:
            chain_id, divergent = progress
            progress = (chain_id, divergent + ((t >= num_warmup) & stats.is_divergent).astype(jnp.int32))
        return (state, adapt, draws, progress), None

    return init, transition


def report_every(total: int) -> int:
    """How many transitions apart progress is reported: about 25 reports in all (each report
    is a host callback, which costs milliseconds)."""
    return max(1, total // 25)


def _reporting(body: Callable, report: Callable | None, total: int) -> Callable:
    """The scan body ``body`` followed, every :func:`report_every` transitions and after the last,
    by ``report(chain_ids, transitions_done, divergences)`` on the host (one callback for the
    chains the body advances: scalars for one chain, ``(C,)`` arrays for vectorized ones)."""
    if report is None:
        return body
    every = report_every(total)

    def reported(carry, xs):
        carry, out = body(carry, xs)
        t, (chain_id, divergent) = xs[0], carry[3]
        jax.lax.cond(((t + 1) % every == 0) | (t == total - 1),
                     lambda: jax.debug.callback(report, chain_id, t + 1, divergent), lambda: None)
        return carry, out

    return reported


def _drive(config: KernelConfig, logdensity_fn: Callable, key: jax.Array, positions: jax.Array,
           num_warmup: int, num_samples: int, thin: int, keep: bool, chain_method: str,
           report: Callable | None = None, chain_ids: jax.Array | None = None):
    """Warm-up and sampling of ``C`` chains, each ONE ``lax.scan`` over its transitions.

    ``chain_method="vectorized"``: the chains advance together (``vmap`` of each transition);
    ``"sequential"``: one after the other (``lax.map``), whose program compiles several times
    faster (no batched trajectory loops) and whose chains never wait for each other's trees.
    """
    num_chains, dim = positions.shape
    total = num_warmup + num_samples * thin
    init, transition = _chain(config, logdensity_fn, dim, positions.dtype, num_warmup, num_samples, thin, keep, report)
    chain_ids = jnp.arange(num_chains) if chain_ids is None else chain_ids
    steps, stages = jnp.arange(total), schedule(config, dim, num_warmup, total)
    keys = key if jnp.ndim(key) == 2 else transition_keys(key, num_chains, total)
    if keys.shape != (num_chains, total):
        raise GenDataError(f"{keys.shape} transition keys for {num_chains} chains of {total} transitions")

    if chain_method == "sequential":
        def one(args):
            position, chain_keys, chain_id = args
            (state, adapt, draws, _), _ = jax.lax.scan(_reporting(transition, report, total),
                                                       init(position, chain_id), (steps, chain_keys, stages))
            return state, adapt.tuning, draws

        return jax.lax.map(one, (positions, keys, chain_ids))
    if chain_method != "vectorized":
        raise GenDataError(f"chain_method must be 'vectorized' or 'sequential', got {chain_method!r}")
    batched = _reporting(jax.vmap(transition, in_axes=((0, 0, 0, 0), (None, 0, None))), report, total)
    (state, adapt, draws, _), _ = jax.lax.scan(batched, jax.vmap(init)(positions, chain_ids), (steps, keys.T, stages))
    return state, adapt.tuning, draws


def transition_keys(key: jax.Array, num_chains: int, num_transitions: int) -> jax.Array:
    """The PRNG key of every transition of every chain, ``(num_chains, num_transitions)``.

    A chain's keys do not depend on how the chains are run (vectorized, one after the other, or
    split across devices), so the same ``key`` gives the same chains in every layout.
    """
    return jax.random.split(key, (num_chains, num_transitions))


def run_chains(config: KernelConfig, logdensity_fn: Callable, key: jax.Array, positions: jax.Array,
               num_warmup: int, num_samples: int, thin: int = 1, chain_method: str = "vectorized",
               report: Callable | None = None, chain_ids: jax.Array | None = None):
    """Warm-up, then ``num_samples`` kept transitions of each of ``C`` chains (pure; trace it under
    ``jit``). Each chain is tuned on its own, as Stan does.

    Parameters
    ----------
    key:
        A PRNG key, or the keys of every transition of every chain, ``(C, num_warmup + num_samples
        * thin)`` as :func:`transition_keys` makes them (to run some of the chains of a larger set).
    positions:
        Starts, shape ``(C, d)``.
    thin:
        Keep every ``thin``-th transition (``num_samples * thin`` transitions after warm-up).
    chain_method:
        ``"vectorized"`` (``vmap`` over chains) or ``"sequential"`` (``lax.map``).
    report:
        Progress: a host function ``report(chain_ids, transitions_done, divergences)`` (numpy
        values: the ids and the divergences after warm-up so far of the chains reported, ``(C,)``
        arrays, or scalars when the chains run one after the other), called every
        :func:`report_every` transitions and after the last, through ``jax.debug.callback``.
    chain_ids:
        ``(C,)`` the ids ``report`` names the chains by (default ``0 .. C-1``).

    Returns
    -------
    (draws, stats, tuning):
        ``draws`` of shape ``(C, num_samples, d)``; :class:`ChainStats` of shape
        ``(C, num_samples)`` (over each thinned block: any divergence, the deepest tree, the
        gradient evaluations summed, the mean acceptance rate; the last transition's energy and
        log-density); the warm-up's :class:`Tuning` with a leading ``C`` (a low-rank inverse mass
        matrix expanded to ``(C, d, d)``).
    """
    _, tuning, (draws, stats) = _drive(config, logdensity_fn, key, positions, num_warmup, num_samples, thin, True,
                                       chain_method, report, chain_ids)
    return draws, stats, tuning._replace(inverse_mass_matrix=as_array(tuning.inverse_mass_matrix))


def final_positions(config: KernelConfig, logdensity_fn: Callable, key: jax.Array, positions: jax.Array,
                    num_warmup: int, num_steps: int) -> jax.Array:
    """Last position of each of ``C`` independent chains after warm-up and ``num_steps`` transitions:
    ``(C, d) -> (C, d)``. Nothing else is kept (sampling an energy: one chain per draw)."""
    states, _, _ = _drive(config, logdensity_fn, key, positions, num_warmup, num_steps, 1, False, "vectorized")
    return states.position


def short_run(config: KernelConfig, logdensity_fn: Callable, key: jax.Array, positions: jax.Array,
              num_steps: int) -> jax.Array:
    """``num_steps`` transitions of each of ``C`` chains with ``config.step_size`` and a unit mass
    matrix, no warm-up: ``(C, d) -> (C, d)`` (negatives for contrastive divergence)."""
    return final_positions(config, logdensity_fn, key, positions, 0, num_steps)
