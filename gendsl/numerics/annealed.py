"""Annealed Langevin dynamics (Song & Ermon 2019) over noise levels, each move MALA-corrected (blackjax).

A noise-conditional log-density ``logdensity_fn(u, sigma)`` (the data smoothed by ``N(0, sigma^2)``,
as a multi-level denoising score matching trains it) is followed from the largest noise level to
the smallest: at each level every particle makes ``steps`` moves of blackjax's Metropolis-adjusted
Langevin kernel with step size ``step_size * sigma^2`` (NCSN's ``alpha_i`` proportional to
``sigma_i^2``, since the smoothed density's scale is at least ``sigma``). The Metropolis correction
makes each level's moves leave that level's density invariant, so a too large step is rejected
rather than diverging. The particles are independent chains: each draw is one particle's final
position at the smallest level; with ``denoise=true`` it is then moved to its mean given that
level's noise by Tweedie's formula, ``u + sigma_min^2 * grad log p_sigma_min(u)`` (NCSN's and
EDM's last denoising step, which removes the smallest level's blur at the price of shrinking the
draws toward the modes; on the 2-D sets of benchmarks/energy_mixing.py it changed the energy
distance by under 5%, so it is not the default).

Why a sibling table of :data:`~gendsl.numerics.kernels.KERNELS`: a kernel is one chain's transition
on one density; annealing needs a family of densities indexed by a noise level. Its signature has
the kernel category, so ``sampler=annealed(...)`` is accepted wherever an energy takes a kernel.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from gendsl.core.catalog import Table
from gendsl.core.signatures import Param, Signature
from gendsl.errors import GenDataError

__all__ = ["ANNEALED_SIGNATURE", "ANNEALED_SAMPLERS", "AnnealedConfig", "config_from_spec", "ladder",
           "run_annealed"]

#: ``annealed(...)`` in the language
ANNEALED_SIGNATURE = Signature("annealed", "kernel", (
        Param("levels", "int", 0, limit=10**4, doc="noise levels, geometric between the trained largest and smallest "
                                                   "(0: the levels it was trained on)"),
        Param("steps", "int", 20, limit=10**5, doc="MALA moves per noise level"),
        Param("step_size", "number", 0.5, doc="step size over sigma^2 at each level"),
        Param("denoise", "bool", False, doc="end with Tweedie's denoising step at the smallest level "
                                            "(the draws' mean given that level's noise)"),
    ), "annealed Langevin (MALA-corrected) over the noise levels of a multi-level dsm energy")

#: the annealed samplers by name (beside the kernels; see the module docstring)
ANNEALED_SAMPLERS = Table("annealed sampler", {"annealed": ANNEALED_SIGNATURE})


@dataclass(frozen=True)
class AnnealedConfig:
    """A checked ``annealed(...)``: levels (0: the trained ones), MALA moves per level, step size
    over sigma^2, and whether the draws end with Tweedie's denoising step."""

    levels: int = 0
    steps: int = 20
    step_size: float = 0.5
    denoise: bool = False

    def evaluations(self, trained_levels: int) -> int:
        """Gradient evaluations per draw: one per move, plus the start of each level (and the denoising step)."""
        return (self.levels or trained_levels) * (self.steps + 1) + int(self.denoise)

    def describe(self) -> str:
        return (f"annealed(levels={self.levels or 'trained'}, steps={self.steps}, step_size={self.step_size:g}"
                + (", denoise=true" if self.denoise else "") + ")")


def config_from_spec(spec) -> AnnealedConfig:
    """The checked :class:`AnnealedConfig` of a resolved ``sampler=annealed(...)`` spec."""
    config = AnnealedConfig(int(spec["levels"]), int(spec["steps"]), float(spec["step_size"]), bool(spec["denoise"]))
    if config.levels == 1 or config.levels < 0:
        raise GenDataError(f"annealed needs at least 2 levels (or 0: the trained ones), got levels={config.levels}")
    if config.steps < 1:
        raise GenDataError(f"annealed needs at least 1 step per level, got steps={config.steps}")
    if not 0.0 < config.step_size < np.inf:
        raise GenDataError(f"step_size must be a positive number, got {config.step_size}")
    return config


def ladder(sigma_max: float, sigma_min: float, levels: int) -> np.ndarray:
    """``(levels,)`` noise levels, geometric from ``sigma_max`` down to ``sigma_min``."""
    return np.geomspace(sigma_max, sigma_min, levels)


def run_annealed(config: AnnealedConfig, logdensity_fn: Callable, key: jax.Array, positions: jax.Array,
                 sigmas: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Annealed, MALA-corrected Langevin dynamics of independent particles.

    Parameters
    ----------
    logdensity_fn:
        ``(u (d,), sigma ()) -> ()``: the noise-conditional unnormalised log-density.
    positions:
        ``(N, d)`` starts (draws of something as wide as the largest level's density).
    sigmas:
        ``(L,)`` noise levels, largest first.

    Returns
    -------
    (positions, acceptance):
        ``(N, d)`` final positions at the last level (denoised when ``config.denoise``) and
        ``(L,)`` mean acceptance rate per level.
    """
    # blackjax is imported where it is used: importing it starts the XLA backend, and a multi-host
    # run must call jax.distributed.initialize (the CLI's --coordinator) before that happens
    from blackjax.mcmc import mala

    kernel = mala.build_kernel()
    dtype = positions.dtype

    def one_particle(key, u, sigma):
        target = lambda q: logdensity_fn(q, sigma)  # noqa: E731
        step_size = (config.step_size * sigma ** 2).astype(dtype)

        def move(state, k):
            state, info = kernel(k, state, target, step_size)
            return state, info.acceptance_rate.astype(dtype)

        state, accepts = jax.lax.scan(move, mala.init(u, target), jax.random.split(key, config.steps))
        return state.position, jnp.mean(accepts)

    def level(u, xs):
        key, sigma = xs
        u, accepts = jax.vmap(one_particle, in_axes=(0, 0, None))(jax.random.split(key, u.shape[0]), u, sigma)
        return u, jnp.mean(accepts)

    sigmas = jnp.asarray(sigmas, dtype)
    positions, acceptance = jax.lax.scan(level, positions, (jax.random.split(key, sigmas.shape[0]), sigmas))
    if config.denoise:  # Tweedie: E[clean | noisy] = noisy + sigma^2 * score
        score = jax.vmap(jax.grad(logdensity_fn), in_axes=(0, None))(positions, sigmas[-1])
        positions = positions + sigmas[-1] ** 2 * score
    return positions, acceptance
