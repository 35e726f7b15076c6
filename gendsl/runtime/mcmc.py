"""The blackjax bridge: kernel selection, warm-up, and a pure multi-chain driver.

Every kernel comes from blackjax: NUTS and HMC (tuned by blackjax's window adaptation, Stan's
schedule: step size by dual averaging, then a diagonal or dense inverse mass matrix over doubling
windows), MALA (its step size tuned by dual averaging), and the unadjusted Langevin algorithm
(blackjax's overdamped Langevin step, no tuning). A target is ``logdensity_fn(position)`` for a
flat position of shape ``(d,)``.

The driver is a set of pure functions of explicit keys, meant to be traced inside ONE ``jax.jit``
by the caller: :func:`run_chain` (warm-up then sampling of one chain, ``lax.scan``, no Python in
the loop) and :func:`run_chains` (the same, ``vmap``-ed over chains, each chain tuned on its own as
Stan does); :func:`final_positions` (only the last position of many chains: sampling an energy)
and :func:`short_run` (a few fixed-parameter steps: contrastive-divergence negatives).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, NamedTuple

import blackjax
import jax
import jax.numpy as jnp
from blackjax.adaptation.base import get_filter_adapt_info_fn
from blackjax.adaptation.step_size import dual_averaging_adaptation
from blackjax.mcmc.diffusions import overdamped_langevin

from gendsl.errors import GenDataError

__all__ = [
    "KERNELS",
    "DENSE_MAX_DIM",
    "KERNEL_OPTIONS",
    "KernelConfig",
    "kernel_config",
    "config_from_spec",
    "Tuning",
    "ChainStats",
    "init_state",
    "build_step",
    "warmup",
    "run_chain",
    "run_chains",
    "final_positions",
    "short_run",
]

#: kernels by name; "auto" means NUTS
KERNELS = ("nuts", "hmc", "mala", "langevin")
#: "auto" mass matrix: dense up to this many unconstrained dimensions, diagonal above
DENSE_MAX_DIM = 12
#: acceptance rates targeted by the step-size adaptation when none is given
DEFAULT_TARGET = {"nuts": 0.8, "hmc": 0.8, "mala": 0.574, "langevin": 0.574}
#: a NUTS transition is counted as this many gradient evaluations by ``describe``
NUTS_TYPICAL_STEPS = 8


@dataclass(frozen=True)
class KernelConfig:
    """A resolved kernel and its settings.

    Attributes
    ----------
    name:
        One of :data:`KERNELS`.
    step_size:
        Initial step size (NUTS, HMC, MALA: adapted during warm-up when there is one) or the
        fixed step size (Langevin, or any kernel without warm-up).
    target_accept:
        Acceptance rate targeted by the step-size adaptation.
    max_tree_depth:
        NUTS: most trajectory doublings per transition.
    num_integration_steps:
        HMC: leapfrog steps per transition.
    mass:
        ``"auto"`` (dense up to :data:`DENSE_MAX_DIM` dimensions), ``"dense"`` or ``"diagonal"``.
    """

    name: str = "nuts"
    step_size: float = 1.0
    target_accept: float = 0.8
    max_tree_depth: int = 10
    num_integration_steps: int = 16
    mass: str = "auto"

    def dense(self, dim: int) -> bool:
        """Whether the inverse mass matrix is dense for a target of ``dim`` dimensions."""
        return self.mass == "dense" or (self.mass == "auto" and dim <= DENSE_MAX_DIM)

    @property
    def adapts_mass(self) -> bool:
        return self.name in ("nuts", "hmc")

    def gradient_steps(self) -> int:
        """Gradient evaluations of one transition (NUTS: a typical count)."""
        return {"nuts": NUTS_TYPICAL_STEPS, "hmc": self.num_integration_steps}.get(self.name, 1)

    def describe(self) -> str:
        if self.name == "nuts":
            return f"nuts(max_tree_depth={self.max_tree_depth}, target_accept={self.target_accept:g}, mass={self.mass})"
        if self.name == "hmc":
            return f"hmc(leapfrog={self.num_integration_steps}, mass={self.mass})"
        return f"{self.name}(step_size={self.step_size:g})"


#: options of :func:`kernel_config` and how each is read
KERNEL_OPTIONS = {
    "step_size": float,
    "target_accept": float,
    "max_tree_depth": int,
    "num_integration_steps": int,
    "mass": str,
}


def kernel_config(kernel: str = "auto", **options) -> KernelConfig:
    """Resolve a kernel name and options into a checked :class:`KernelConfig`.

    Parameters
    ----------
    kernel:
        ``"auto"`` (NUTS), ``"nuts"``, ``"hmc"``, ``"mala"`` or ``"langevin"``.
    **options:
        ``step_size``, ``target_accept``, ``max_tree_depth``, ``num_integration_steps``, ``mass``.

    Raises
    ------
    GenDataError
        For an unknown kernel or option, or an option out of range.
    """
    from gendsl.errors import did_you_mean

    name = "nuts" if kernel == "auto" else kernel
    if name not in KERNELS:
        raise GenDataError(f"unknown kernel '{kernel}'{did_you_mean(str(kernel), KERNELS)} "
                           f"(kernels: auto, {', '.join(KERNELS)})")
    values = {}
    for key, value in options.items():
        if value is None:
            continue
        if key not in KERNEL_OPTIONS:
            raise GenDataError(f"unknown kernel option '{key}'{did_you_mean(key, KERNEL_OPTIONS)} "
                               f"(options: {', '.join(KERNEL_OPTIONS)})")
        values[key] = KERNEL_OPTIONS[key](value)
    values.setdefault("target_accept", DEFAULT_TARGET[name])
    values.setdefault("step_size", 1.0 if name in ("nuts", "hmc") else 0.01)
    config = KernelConfig(name, **values)
    if config.mass not in ("auto", "dense", "diagonal"):
        raise GenDataError(f"mass must be 'auto', 'dense' or 'diagonal', got '{config.mass}'")
    if not 0.0 < config.target_accept < 1.0:
        raise GenDataError(f"target_accept must lie in (0, 1), got {config.target_accept}")
    if not config.step_size > 0.0 or not math.isfinite(config.step_size):
        raise GenDataError(f"step_size must be a positive number, got {config.step_size}")
    if config.max_tree_depth < 1 or config.num_integration_steps < 1:
        raise GenDataError("max_tree_depth and num_integration_steps must be at least 1")
    return config


def config_from_spec(spec) -> KernelConfig:
    """The :class:`KernelConfig` of a resolved ``sampler=`` spec (``nuts(...)``, ``mala(...)``...)."""
    opts = spec.options
    return kernel_config(
        spec.name,
        step_size=opts.get("step_size"),
        target_accept=opts.get("target_accept"),
        max_tree_depth=opts.get("max_depth"),
        num_integration_steps=opts.get("leapfrog"),
        mass=opts.get("mass"),
    )


class Tuning(NamedTuple):
    """What warm-up hands to sampling (per chain): the step size and the inverse mass matrix."""

    step_size: jax.Array
    inverse_mass_matrix: jax.Array


class ChainStats(NamedTuple):
    """Per-transition statistics, each of shape ``(..., num_samples)``.

    Attributes
    ----------
    is_divergent:
        The energy error exceeded blackjax's divergence threshold (Langevin: a non-finite density).
    tree_depth:
        NUTS: trajectory doublings; 0 for the other kernels.
    num_steps:
        Gradient evaluations of the transition.
    acceptance_rate:
        Mean Metropolis acceptance probability of the transition (Langevin: 1).
    """

    is_divergent: jax.Array
    tree_depth: jax.Array
    num_steps: jax.Array
    acceptance_rate: jax.Array


class _State(NamedTuple):
    position: jax.Array
    logdensity: jax.Array
    logdensity_grad: jax.Array


def init_state(logdensity_fn: Callable, position: jax.Array):
    """The kernel state at ``position`` (position, log-density and its gradient)."""
    logdensity, grad = jax.value_and_grad(logdensity_fn)(position)
    return _State(position, logdensity, grad)


def _as_hmc(state):
    return blackjax.mcmc.hmc.HMCState(state.position, state.logdensity, state.logdensity_grad)


def build_step(config: KernelConfig, logdensity_fn: Callable) -> Callable:
    """One transition: ``step(key, state, tuning) -> (state, ChainStats)`` (all scalars per chain)."""
    name = config.name
    if name == "nuts":
        kernel = blackjax.nuts.build_kernel()

        def step(key, state, tuning):
            new, info = kernel(key, _as_hmc(state), logdensity_fn, tuning.step_size, tuning.inverse_mass_matrix,
                               max_num_doublings=config.max_tree_depth)
            return _State(*new), ChainStats(info.is_divergent, info.num_trajectory_expansions,
                                            info.num_integration_steps, info.acceptance_rate)
    elif name == "hmc":
        kernel = blackjax.hmc.build_kernel()

        def step(key, state, tuning):
            new, info = kernel(key, _as_hmc(state), logdensity_fn, tuning.step_size, tuning.inverse_mass_matrix,
                               config.num_integration_steps)
            return _State(*new), ChainStats(info.is_divergent, jnp.zeros((), jnp.int32),
                                            jnp.asarray(info.num_integration_steps, jnp.int32), info.acceptance_rate)
    elif name == "mala":
        kernel = blackjax.mala.build_kernel()

        def step(key, state, tuning):
            new, info = kernel(key, blackjax.mcmc.mala.MALAState(*state), logdensity_fn, tuning.step_size)
            return _State(*new), ChainStats(~jnp.isfinite(new.logdensity), jnp.zeros((), jnp.int32),
                                            jnp.ones((), jnp.int32), info.acceptance_rate)
    else:
        langevin = overdamped_langevin(jax.value_and_grad(logdensity_fn))

        def step(key, state, tuning):
            new = _State(*langevin(key, state, tuning.step_size))
            return new, ChainStats(~jnp.isfinite(new.logdensity), jnp.zeros((), jnp.int32),
                                   jnp.ones((), jnp.int32), jnp.ones(()))
    return step


def _identity_tuning(config: KernelConfig, dim: int, dtype) -> Tuning:
    imm = jnp.eye(dim, dtype=dtype) if config.adapts_mass and config.dense(dim) else jnp.ones(dim, dtype)
    return Tuning(jnp.asarray(config.step_size, dtype), imm)


def warmup(config: KernelConfig, logdensity_fn: Callable, key: jax.Array, position: jax.Array,
           num_steps: int):
    """Warm one chain up from ``position`` (shape ``(d,)``): returns ``(state, Tuning)``.

    NUTS and HMC: blackjax's window adaptation (Stan's schedule). MALA: dual averaging of the step
    size towards ``config.target_accept``. Langevin: ``num_steps`` untuned steps (burn-in). With
    ``num_steps == 0`` the chain starts at ``position`` with ``config.step_size`` and a unit mass.
    """
    dim, dtype = position.shape[0], position.dtype
    tuning = _identity_tuning(config, dim, dtype)
    state = init_state(logdensity_fn, position)
    if num_steps == 0:
        return state, tuning
    if config.adapts_mass:
        algorithm = blackjax.nuts if config.name == "nuts" else blackjax.hmc
        extra = ({"max_num_doublings": config.max_tree_depth} if config.name == "nuts"
                 else {"num_integration_steps": config.num_integration_steps})
        adaptation = blackjax.window_adaptation(
            algorithm, logdensity_fn, is_mass_matrix_diagonal=not config.dense(dim),
            initial_step_size=config.step_size, target_acceptance_rate=config.target_accept,
            adaptation_info_fn=get_filter_adapt_info_fn(), **extra)
        (last, params), _ = adaptation.run(key, position, num_steps=num_steps)
        tuned = Tuning(jnp.asarray(params["step_size"], dtype), params["inverse_mass_matrix"].astype(dtype))
        return _State(*last), tuned
    step = build_step(config, logdensity_fn)
    if config.name == "langevin":
        def burn(carry, k):
            new, _ = step(k, carry, tuning)
            return new, None

        state, _ = jax.lax.scan(burn, state, jax.random.split(key, num_steps))
        return state, tuning
    da_init, da_update, da_final = dual_averaging_adaptation(config.target_accept)

    def adapt(carry, k):
        st, da = carry
        new, stats = step(k, st, Tuning(jnp.exp(da.log_step_size).astype(dtype), tuning.inverse_mass_matrix))
        return (new, da_update(da, jnp.nan_to_num(stats.acceptance_rate))), None

    (state, da), _ = jax.lax.scan(adapt, (state, da_init(config.step_size)), jax.random.split(key, num_steps))
    return state, Tuning(jnp.asarray(da_final(da), dtype), tuning.inverse_mass_matrix)


def run_chain(config: KernelConfig, logdensity_fn: Callable, key: jax.Array, position: jax.Array,
              num_warmup: int, num_samples: int, thin: int = 1):
    """Warm-up then ``num_samples`` kept transitions of one chain (pure; trace it under ``jit``).

    Parameters
    ----------
    position:
        Start, shape ``(d,)``.
    thin:
        Keep every ``thin``-th transition (``num_samples * thin`` transitions in all).

    Returns
    -------
    (positions, stats, tuning):
        ``positions`` of shape ``(num_samples, d)``, :class:`ChainStats` of shape
        ``(num_samples,)`` each (summed over thinned transitions for counts, or of the last one),
        and the warm-up's :class:`Tuning`.
    """
    warm_key, sample_key = jax.random.split(key)
    state, tuning = warmup(config, logdensity_fn, warm_key, position, num_warmup)
    step = build_step(config, logdensity_fn)

    def one(carry, k):
        if thin == 1:
            new, stats = step(k, carry, tuning)
            return new, (new.position, stats)

        def inner(c, kk):
            s, acc = c
            s, st = step(kk, s, tuning)
            return (s, acc._replace(is_divergent=acc.is_divergent | st.is_divergent,
                                    num_steps=acc.num_steps + st.num_steps,
                                    tree_depth=st.tree_depth, acceptance_rate=st.acceptance_rate)), None

        zero = ChainStats(jnp.zeros((), bool), jnp.zeros((), jnp.int32), jnp.zeros((), jnp.int32), jnp.zeros(()))
        (new, stats), _ = jax.lax.scan(inner, (carry, zero), jax.random.split(k, thin))
        return new, (new.position, stats)

    _, (positions, stats) = jax.lax.scan(one, state, jax.random.split(sample_key, num_samples))
    return positions, stats, tuning


def run_chains(config: KernelConfig, logdensity_fn: Callable, key: jax.Array, positions: jax.Array,
               num_warmup: int, num_samples: int, thin: int = 1):
    """:func:`run_chain` over ``C`` chains at once (``vmap``), each tuned on its own.

    ``positions``: starts, shape ``(C, d)``. Returns positions ``(C, num_samples, d)``,
    :class:`ChainStats` of shape ``(C, num_samples)`` and :class:`Tuning` with a leading ``C``.
    """
    keys = jax.random.split(key, positions.shape[0])
    return jax.vmap(lambda k, p: run_chain(config, logdensity_fn, k, p, num_warmup, num_samples, thin))(keys, positions)


def final_positions(config: KernelConfig, logdensity_fn: Callable, key: jax.Array, positions: jax.Array,
                    num_warmup: int, num_steps: int) -> jax.Array:
    """Last position of each of ``C`` chains after warm-up and ``num_steps`` transitions: ``(C, d)``.

    One independent chain per draw (``vmap``); nothing but the final state is kept.
    """
    def one(k, p):
        warm_key, run_key = jax.random.split(k)
        state, tuning = warmup(config, logdensity_fn, warm_key, p, num_warmup)
        step = build_step(config, logdensity_fn)
        state = jax.lax.fori_loop(0, num_steps, lambda i, s: step(jax.random.fold_in(run_key, i), s, tuning)[0], state)
        return state.position

    return jax.vmap(one)(jax.random.split(key, positions.shape[0]), positions)


def short_run(config: KernelConfig, logdensity_fn: Callable, key: jax.Array, positions: jax.Array,
              num_steps: int) -> jax.Array:
    """``num_steps`` transitions of each of ``C`` chains with the configured step size and a unit
    mass matrix, no warm-up: ``(C, d) -> (C, d)`` (negatives for contrastive divergence)."""
    return final_positions(config, logdensity_fn, key, positions, 0, num_steps)
