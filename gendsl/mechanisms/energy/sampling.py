"""How an energy node draws: its sampler (the one given, or a default that mixes), the draws, the price.

The default, when ``sampler=`` is not given: an expression energy that reads other variables (a
Bayesian posterior, a physics potential) is sampled by NUTS, one without parents by tempered SMC
from a standard normal (its modes weighted by the reweighting, with log Z); a network energy that depends on other variables by MALA (each draw
its own chain, as it was trained); an unconditional network energy by a population that mixes
between modes, where a chain started from noise stays in the mode it falls into: tempered SMC from
its base when it has one (``base=``), annealed Langevin over its noise levels when it was trained by
a multi-level ``dsm(levels=L)``, else tempered SMC from a Gaussian fitted to its data.

Samplers: a chain kernel of :data:`~gendsl.numerics.kernels.KERNELS` (one chain per draw, or draws
spread over long chains), ``smc`` (:mod:`.tempered`), ``annealed``
(:mod:`gendsl.numerics.annealed`, over the node's noise levels) and ``tempering``
(:mod:`gendsl.numerics.tempering`, draws spread over the coldest replicas of its ladders).
"""

from __future__ import annotations

import dataclasses
import math

import jax

from gendsl.core.signatures import Spec, default_spec
from gendsl.errors import GenDataError, GenSemanticError
from gendsl.mechanisms.energy import tempered
from gendsl.mechanisms.energy.objectives import noise_levels, training_objective
from gendsl.numerics import annealed, kernels, mcmc, smc, tempering

__all__ = ["AUTO_CHAINS", "POPULATIONS", "sampler_spec", "check_levels", "configure", "start", "draw", "negatives", "chain_cost"]

#: long chains used by default by NUTS and HMC on an unconditional energy
AUTO_CHAINS = 16
#: samplers that draw the whole sample from one population (no conditioning)
POPULATIONS = ("smc", "annealed", "tempering")


def sampler_spec(spec: Spec, parents: bool = True) -> tuple[Spec, str]:
    """The sampler given by ``sampler=``, else the default (module docstring), and why it was chosen. A network
    energy is conditional when it has ``given=``, ``base=NAME`` or a base with ``given=`` (the parents it reads);
    an expression energy when it reads other variables (``parents``)."""
    base = spec.get("base")
    conditioned = (bool(spec.get("given")) or isinstance(base, str)
                   or (isinstance(base, Spec) and base.category == "mechanism" and bool(base.get("given"))))
    given = spec.get("sampler")
    if given is not None:
        return given, ""
    if not isinstance(spec["E"], Spec):
        if parents or base is not None:
            return default_spec(kernels.NUTS_SIGNATURE), "default for an expression energy"
        return default_spec(smc.SMC_SIGNATURE), "default for an unconditional expression energy: tempered from N(0, I)"
    if conditioned:
        return default_spec(kernels.MALA_SIGNATURE), "default for a conditional network energy: a chain per draw"
    if isinstance(spec.get("base"), Spec):
        return default_spec(smc.SMC_SIGNATURE), "default for a network energy with a base: tempered from the base"
    if len(noise_levels(training_objective(spec))) > 1:
        return default_spec(annealed.ANNEALED_SIGNATURE), "default for an energy trained at several noise levels"
    return default_spec(smc.SMC_SIGNATURE), "default for a network energy: tempered from a Gaussian fitted to the data"


def check_levels(name: str, spec: Spec, span) -> None:
    """Refuse, at check time, ``dsm(levels=L > 1)`` without ``sigma_max > sigma > 0`` and ``annealed``
    for an energy without noise levels (an expression, or one trained at a single level)."""
    train = training_objective(spec)
    try:
        levels = noise_levels(train)
    except GenDataError as err:
        raise GenSemanticError(f"the objective of '{name}': {err.message}", span) from None
    sampler = spec.get("sampler")
    if sampler is not None and sampler.name == "annealed" and len(levels) < 2:
        what = ("an expression" if not isinstance(spec["E"], Spec)
                else f"trained at one noise level ({train.name if train is not None else 'dsm'})")
        raise GenSemanticError(
            f"annealed(...) anneals over the noise levels of an energy trained by dsm(levels=L) with L >= 2; the "
            f"energy of '{name}' is {what}: use tempering(...) or smc(...) to cross between modes", span)


def configure(node, spec: Spec) -> None:
    """Set the node's sampler: ``node.population`` (None or one of :data:`POPULATIONS`) and its config,
    or the chain kernel, its warm-up, steps and long chains; ``node.sampler_name`` says which and why."""
    check_levels(node.ctx.name, spec, node.ctx.span)
    conditioned = [p for p in node.ctx.parents if p != node.base_name]
    sampler, reason = sampler_spec(spec, bool(conditioned))
    node.population = sampler.name if sampler.name in POPULATIONS else None
    # cd's negatives, when a population samples, come from MALA's defaults
    node.config = kernels.config_from_spec(default_spec(kernels.MALA_SIGNATURE) if node.population else sampler)
    node.chains = 0
    if node.population is not None:
        _configure_population(node, sampler)
    else:
        _configure_chains(node, sampler, conditioned)
    if reason:
        node.sampler_name += f" ({reason})"


def _configure_population(node, sampler: Spec) -> None:
    if node.ctx.parents:
        raise GenSemanticError(
            f"{sampler.name}(...) draws the whole sample from one population, but the energy of '{node.ctx.name}' "
            f"depends on {', '.join(node.ctx.parents)}; use a kernel such as mala() (one chain per draw)", node.ctx.span)
    node.smc = smc.config_from_spec(sampler) if sampler.name == "smc" else None
    node.annealed = annealed.config_from_spec(sampler) if sampler.name == "annealed" else None
    node.tempering = tempering.config_from_spec(sampler) if sampler.name == "tempering" else None
    if node.smc is not None:
        node.sampler_name = f"{node.smc.describe()} from {'base' if node.base is not None else 'a Gaussian'}"
    elif node.tempering is not None:
        node.sampler_name = node.tempering.describe()
    else:
        node.sampler_name = f"{node.annealed.describe()} over sigma {node.sigmas[0]:g}..{node.sigmas[-1]:g}"


def _configure_chains(node, sampler: Spec, conditioned: list[str]) -> None:
    node.smc = node.annealed = node.tempering = None
    node.num_warmup, node.num_steps, chains = sampler["warmup"], sampler["steps"], sampler["chains"]
    if chains and conditioned:
        raise GenSemanticError(
            f"{sampler.name}(chains={chains}) draws from a few long chains, but the energy of '{node.ctx.name}' "
            f"depends on {', '.join(conditioned)}: each draw needs its own chain (leave chains at 0)", node.ctx.span)
    if not chains and not conditioned and node.config.adapts_mass:
        chains = AUTO_CHAINS
    #: long chains the draws are spread over (0: one chain per draw)
    node.chains = chains
    if not chains and node.config.mass == "auto" and math.prod(node.ctx.shape) > kernels.DENSE_MAX_DIM:
        # one chain per draw: a low-rank estimate's buffer of each chain's draws and gradients
        # would grow with the number of draws; the diagonal one's memory does not
        node.config = dataclasses.replace(node.config, mass="diagonal")
    node.sampler_name = f"{node.config.describe()} x {node.num_warmup}+{node.num_steps}"
    if node.base is not None or node.base_name:
        node.sampler_name += f" from {'base' if node.base is not None else node.base_name}"


def start(node, params, key: jax.Array, n: int, given: dict) -> jax.Array:
    """``(n, dim)`` unconstrained starting points: base draws, the base variable, or noise."""
    if node.base is not None:
        return node._unconstrain(params, node.base.sample(params.get("base", {}), key, n, given))
    if node.base_name is not None:
        return node._unconstrain(params, given[node.base_name])
    return mcmc.uniform_starts(key, (n, node.dim))


def _annealed(node, params, key: jax.Array, n: int):
    """Annealed Langevin from the fitted Gaussian widened by the largest noise level."""
    config = node.annealed
    sigmas = node.sigmas if not config.levels else annealed.ladder(node.sigmas[0], node.sigmas[-1], config.levels)
    draw_ref, _ = tempered.reference(node, params)
    k_start, k_wide, k_run = jax.random.split(key, 3)
    u0 = draw_ref(k_start, n) + sigmas[0] * jax.random.normal(k_wide, (n, node.dim))
    u, acceptance = annealed.run_annealed(config, lambda q, s: node._log_density_u(params, q, {}, s), k_run, u0, sigmas)
    return u, {"acceptance_rate": acceptance}


def _tempering(node, params, key: jax.Array, n: int):
    """The draws spread over the coldest replicas; every replica starts from noise."""
    config = node.tempering
    per_chain = -(-n // config.chains)
    thin = max(1, config.steps // per_chain)
    k_start, k_run = jax.random.split(key)
    u0 = mcmc.uniform_starts(k_start, (config.chains, config.temperatures, node.dim))
    result = tempering.run_tempering(config, lambda q: node._log_density_u(params, q, {}), k_run, u0, per_chain, thin)
    info = {"swap_rates": result.swap_rates, "acceptance_rate": result.acceptance_rate}
    return result.draws.reshape(-1, node.dim)[:n], info


def draw(node, params, key: jax.Array, given: dict, n: int) -> tuple[jax.Array, dict]:
    """``(n, dim)`` unconstrained draws and the sampler's info (pure; the node jits it)."""
    start_key, run_key = jax.random.split(key)
    if node.smc is not None:
        return tempered.sample(node, params, key, n)
    if node.annealed is not None:
        return _annealed(node, params, key, n)
    if node.tempering is not None:
        return _tempering(node, params, key, n)
    if node.chains:
        chains = min(n, node.chains)
        per_chain = -(-n // chains)
        thin = max(1, node.num_steps // per_chain)
        u0 = start(node, params, start_key, chains, jax.tree_util.tree_map(lambda v: v[:chains], given))
        draws, _, _ = mcmc.run_chains(node.config, lambda u: node._log_density_u(params, u, {}), run_key, u0,
                                      node.num_warmup, per_chain, thin)
        return draws.reshape(-1, node.dim)[:n], {}
    u0 = start(node, params, start_key, n, given)

    def one(k, u_start, g):
        return mcmc.final_positions(node.config, lambda u: node._log_density_u(params, u, g), k,
                                    u_start[None], node.num_warmup, node.num_steps)[0]

    return jax.vmap(one)(jax.random.split(run_key, n), u0, given), {}


def negatives(node, params, u0: jax.Array, given: dict, key: jax.Array, num_steps: int) -> jax.Array:
    """``num_steps`` kernel transitions from each row of ``u0`` under the (frozen) model."""
    frozen = jax.lax.stop_gradient(params)

    def one(k, u_start, g):
        return mcmc.short_run(node.config, lambda u: node._log_density_u(frozen, u, g), k, u_start[None], num_steps)[0]

    return jax.lax.stop_gradient(jax.vmap(one)(jax.random.split(key, u0.shape[0]), u0, given))


def chain_cost(spec: Spec, parents: bool = True) -> int:
    """Gradient evaluations per draw: transitions (warm-up and kept) times evaluations per transition;
    ``smc``: per particle of a typical run; ``annealed``: per particle; ``tempering``: per ladder."""
    sampler, _ = sampler_spec(spec, parents)
    if sampler.name == "smc":
        return smc.config_from_spec(sampler).evaluations()
    if sampler.name == "annealed":
        return annealed.config_from_spec(sampler).evaluations(len(noise_levels(training_objective(spec))))
    if sampler.name == "tempering":
        return tempering.config_from_spec(sampler).evaluations()
    return (sampler["warmup"] + sampler["steps"]) * kernels.config_from_spec(sampler).gradient_steps()
