"""The MCMC kernel table: every kernel the language names, one entry each, and its settings.

Every kernel comes from blackjax: NUTS and HMC (tuned by Stan's windowed warm-up,
:mod:`gendsl.numerics.warmup`), MALA (its step size tuned by dual averaging), and the unadjusted
Langevin algorithm (blackjax's overdamped Langevin step, no tuning). A target is
``logdensity_fn(position)`` for a flat position of shape ``(d,)``. A :class:`Kernel` entry holds
what the driver (:mod:`gendsl.numerics.mcmc`), the warm-up and ``describe`` need; a new kernel is
one entry of :data:`KERNELS`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

from gendsl.core.catalog import Table
from gendsl.core.signatures import Param, Signature
from gendsl.errors import GenDataError, did_you_mean
from gendsl.numerics.adaptation import DENSE_MAX_DIM, MASS_CHOICES, resolve

__all__ = [
    "KERNELS",
    "Kernel",
    "DENSE_MAX_DIM",
    "DEFAULT_TARGET",
    "KERNEL_OPTIONS",
    "KernelConfig",
    "kernel_config",
    "config_from_spec",
    "ChainStats",
    "State",
    "init_state",
    "build_step",
    "NUTS_SIGNATURE",
    "HMC_SIGNATURE",
    "MALA_SIGNATURE",
    "LANGEVIN_SIGNATURE",
]

#: the ``chains=`` option of every kernel
CHAINS_DOC = "0: every draw is the last state of its own chain; C > 0: draws spread over C long chains"
#: the ``mass=`` option of NUTS and HMC
MASS_DOC = ("auto: dense up to 12 dimensions, lowrank up to 1000, diagonal above; dense, diagonal: Stan's windowed "
            "covariance; fisher: nutpie's diagonal from draws and gradients; lowrank: nutpie's low-rank plus diagonal")
#: ``nuts(...)`` in the language
NUTS_SIGNATURE = Signature("nuts", "kernel", (
        Param("warmup", "int", 500), Param("steps", "int", 1000), Param("max_depth", "int", 10),
        Param("target_accept", "number", 0.95), Param("mass", "str", "auto", MASS_CHOICES, doc=MASS_DOC),
        Param("chains", "int", 0, doc=CHAINS_DOC),
        Param("step_size", "number", 1.0, doc="initial step size (kept when warmup=0)"),
    ), "No-U-Turn sampler with window adaptation")
#: ``hmc(...)`` in the language
HMC_SIGNATURE = Signature("hmc", "kernel", (
        Param("steps", "int", 1000), Param("warmup", "int", 500), Param("step_size", "number", 0.1),
        Param("leapfrog", "int", 16), Param("mass", "str", "auto", MASS_CHOICES, doc=MASS_DOC),
        Param("chains", "int", 0, doc=CHAINS_DOC), Param("target_accept", "number", 0.9),
    ), "Hamiltonian Monte Carlo with window adaptation")
#: ``mala(...)`` in the language
MALA_SIGNATURE = Signature("mala", "kernel", (
        Param("step_size", "number", 0.01), Param("steps", "int", 200), Param("warmup", "int", 0),
        Param("chains", "int", 0, doc=CHAINS_DOC), Param("target_accept", "number", 0.574),
    ), "Metropolis-adjusted Langevin (step size adapted during warm-up)")
#: ``langevin(...)`` in the language
LANGEVIN_SIGNATURE = Signature("langevin", "kernel", (
        Param("step_size", "number", 0.01), Param("steps", "int", 200), Param("warmup", "int", 0),
        Param("chains", "int", 0, doc=CHAINS_DOC),
    ), "unadjusted Langevin algorithm")

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
        ``"auto"`` (:func:`~gendsl.numerics.adaptation.resolve`: dense up to :data:`DENSE_MAX_DIM`
        dimensions, low-rank above) or an entry of :data:`~gendsl.numerics.adaptation.METRICS`
        (``"dense"``, ``"diagonal"``, ``"fisher"``, ``"lowrank"``).
    """

    name: str = "nuts"
    step_size: float = 1.0
    target_accept: float = 0.95
    max_tree_depth: int = 10
    num_integration_steps: int = 16
    mass: str = "auto"

    def metric(self, dim: int) -> str:
        """The mass-matrix estimator (an entry of :data:`~gendsl.numerics.adaptation.METRICS`) for
        a target of ``dim`` dimensions."""
        return resolve(self.mass, dim)

    @property
    def kernel(self) -> "Kernel":
        """The kernel's entry of :data:`KERNELS`."""
        return KERNELS[self.name]

    @property
    def adapts_mass(self) -> bool:
        return self.kernel.adapts_mass

    def gradient_steps(self) -> int:
        """Gradient evaluations of one transition (NUTS: a typical count)."""
        return self.kernel.gradient_steps(self)

    def describe(self) -> str:
        return self.kernel.describe(self)


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
    values.setdefault("target_accept", KERNELS[name].default_target)
    values.setdefault("step_size", KERNELS[name].default_step_size)
    config = KernelConfig(name, **values)
    if config.mass not in MASS_CHOICES:
        raise GenDataError(f"mass must be one of {', '.join(map(repr, MASS_CHOICES))}, got '{config.mass}'"
                           f"{did_you_mean(config.mass, MASS_CHOICES)}")
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
    energy:
        NUTS and HMC: the Hamiltonian (potential plus kinetic energy) of the state the transition
        ends in, whose spread against its changes is the E-BFMI; NaN (the default) for kernels
        without a momentum (MALA, Langevin).
    logdensity:
        The log-density of the state the transition ends in (Stan's ``lp__``); the driver of
        :mod:`gendsl.numerics.mcmc` records it, so a kernel need not.
    """

    is_divergent: jax.Array
    tree_depth: jax.Array
    num_steps: jax.Array
    acceptance_rate: jax.Array
    energy: jax.Array | float = float("nan")
    logdensity: jax.Array | float = float("nan")


class State(NamedTuple):
    position: jax.Array
    logdensity: jax.Array
    logdensity_grad: jax.Array


def init_state(logdensity_fn: Callable, position: jax.Array):
    """The kernel state at ``position`` (position, log-density and its gradient)."""
    logdensity, grad = jax.value_and_grad(logdensity_fn)(position)
    return State(position, logdensity, grad)


def _as_hmc(state):
    # blackjax is imported where it is used: importing it starts the XLA backend, and a multi-host
    # run must call jax.distributed.initialize (the CLI's --coordinator) before that happens
    import blackjax

    return blackjax.mcmc.hmc.HMCState(state.position, state.logdensity, state.logdensity_grad)


# blackjax is imported where it is used: importing it starts the XLA backend, and a multi-host run
# must call jax.distributed.initialize (the CLI's --coordinator) before that happens


def _nuts_step(config: KernelConfig, logdensity_fn: Callable) -> Callable:
    import blackjax

    kernel = blackjax.nuts.build_kernel()

    def step(key, state, tuning):
        new, info = kernel(key, _as_hmc(state), logdensity_fn, tuning.step_size, tuning.inverse_mass_matrix,
                           max_num_doublings=config.max_tree_depth)
        return State(*new), ChainStats(info.is_divergent, info.num_trajectory_expansions,
                                        info.num_integration_steps, info.acceptance_rate, info.energy)

    return step


def _hmc_step(config: KernelConfig, logdensity_fn: Callable) -> Callable:
    import blackjax

    kernel = blackjax.hmc.build_kernel()

    def step(key, state, tuning):
        new, info = kernel(key, _as_hmc(state), logdensity_fn, tuning.step_size, tuning.inverse_mass_matrix,
                           config.num_integration_steps)
        return State(*new), ChainStats(info.is_divergent, jnp.zeros((), jnp.int32),
                                        jnp.asarray(info.num_integration_steps, jnp.int32), info.acceptance_rate,
                                        info.energy)

    return step


def _mala_step(config: KernelConfig, logdensity_fn: Callable) -> Callable:
    import blackjax

    kernel = blackjax.mala.build_kernel()

    def step(key, state, tuning):
        new, info = kernel(key, blackjax.mcmc.mala.MALAState(*state), logdensity_fn, tuning.step_size)
        return State(*new), ChainStats(~jnp.isfinite(new.logdensity), jnp.zeros((), jnp.int32),
                                        jnp.ones((), jnp.int32), info.acceptance_rate)

    return step


def _langevin_step(config: KernelConfig, logdensity_fn: Callable) -> Callable:
    from blackjax.mcmc.diffusions import overdamped_langevin

    langevin = overdamped_langevin(jax.value_and_grad(logdensity_fn))

    def step(key, state, tuning):
        new = State(*langevin(key, state, tuning.step_size))
        return new, ChainStats(~jnp.isfinite(new.logdensity), jnp.zeros((), jnp.int32),
                               jnp.ones((), jnp.int32), jnp.ones(()))

    return step


class Kernel(NamedTuple):
    """An entry of the kernel table: everything the driver, the warm-up and ``describe`` need.

    Attributes
    ----------
    signature:
        Its name and options in the language (``sampler=nuts(...)``).
    build:
        ``build(config, logdensity_fn) -> step(key, state, tuning) -> (state, ChainStats)``.
    default_target, default_step_size:
        Acceptance rate the step size is adapted to, and the first step size, when none is given.
    adapts_mass:
        Whether warm-up also estimates the inverse mass matrix (Stan's windowed adaptation).
    tunes_step_size:
        Whether warm-up adapts the step size (dual averaging).
    gradient_steps:
        ``gradient_steps(config)``: gradient evaluations of one transition (for ``describe``).
    describe:
        ``describe(config)``: the kernel and its settings in a few words.
    """

    signature: Signature
    build: Callable[[KernelConfig, Callable], Callable]
    default_target: float
    default_step_size: float
    adapts_mass: bool
    tunes_step_size: bool
    gradient_steps: Callable[[KernelConfig], int]
    describe: Callable[[KernelConfig], str]


#: the kernels by name, one entry each; ``"auto"`` means NUTS
KERNELS = Table("MCMC kernel", {
    "nuts": Kernel(NUTS_SIGNATURE, _nuts_step, 0.95, 1.0, True, True, lambda c: NUTS_TYPICAL_STEPS,
                   lambda c: f"nuts(max_tree_depth={c.max_tree_depth}, target_accept={c.target_accept:g}, mass={c.mass})"),
    "hmc": Kernel(HMC_SIGNATURE, _hmc_step, 0.9, 1.0, True, True, lambda c: c.num_integration_steps,
                  lambda c: f"hmc(leapfrog={c.num_integration_steps}, mass={c.mass})"),
    "mala": Kernel(MALA_SIGNATURE, _mala_step, 0.574, 0.01, False, True, lambda c: 1,
                   lambda c: f"mala(step_size={c.step_size:g})"),
    "langevin": Kernel(LANGEVIN_SIGNATURE, _langevin_step, 0.574, 0.01, False, False, lambda c: 1,
                       lambda c: f"langevin(step_size={c.step_size:g})"),
})
#: acceptance rates targeted by the step-size adaptation when none is given
DEFAULT_TARGET = {name: k.default_target for name, k in KERNELS.items()}


def build_step(config: KernelConfig, logdensity_fn: Callable) -> Callable:
    """One transition: ``step(key, state, tuning) -> (state, ChainStats)`` (all scalars per chain)."""
    return config.kernel.build(config, logdensity_fn)
