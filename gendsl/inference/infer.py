"""Posterior inference: the log joint of the latents, handed to a blackjax kernel.

:func:`infer` checks the data, builds the :class:`~gendsl.inference.joint.LogJoint`, finds a
finite starting point for every chain (random points in [-2, 2] of unconstrained space, as
Stan), and runs warm-up and sampling of every chain, and the map back to the constrained space,
in ONE compiled program (``vmap`` over chains, or ``lax.map`` one chain after another;
``lax.scan`` over transitions, no Python in the loop; with ``devices=`` the chains are split
across a device mesh). Everything runs in double precision unless ``precision="single"``, inside a
``jax.enable_x64`` scope: JAX's global setting is left as it was.

Compiled programs are cached per program, data shapes and settings: a second call with new data
of the same shapes runs without tracing again.
"""

from __future__ import annotations

import contextlib
import time
import warnings
from typing import Any, Mapping

import jax
import numpy as np

from gendsl.compiler.bind import prepare
from gendsl.errors import GenDataError, did_you_mean
from gendsl.inference import progress
from gendsl.inference.compiled import pointwise, program_cache, runner, starts
from gendsl.inference.joint import LogJoint
from gendsl.inference.marginal import log_marginal_likelihood
from gendsl.inference.posterior import Posterior
from gendsl.numerics import kernels
from gendsl.numerics.devices import check_divisible, check_host_memory, make_mesh, replicated, sharded
from gendsl.numerics.diagnostics import convergence_problems

__all__ = ["OPTIONS", "infer", "log_joint"]

#: keyword options of :func:`infer` beyond its named arguments
OPTIONS = ("target_accept", "max_tree_depth", "mass", "step_size", "num_integration_steps", "thin", "init",
           "init_tries", "precision", "chain_method", "devices", "progress", "log_marginal")

#: Debug hook: when set, called as ``_observe(compiled, draws, stats, tuning)`` with the compiled
#: program that ran and its outputs exactly as it returns them (on device, with their
#: ``.sharding``), before they become numpy arrays in the :class:`Posterior`. The device tests use
#: it to check that the chains are split across devices.
_observe = None

#: most SMC particles of ``log_marginal``
MAX_PARTICLES = 10**5

#: E-BFMI below which a chain is reported (Stan's threshold)
E_BFMI_LOW = 0.3

#: a chain whose median log density lies this many nats below another chain's sits where the
#: posterior has no mass (e^-100 relative): reported as stranded
LP_GAP = 100.0

def _node_params(lowered, params: Mapping[str, Any] | None) -> dict:
    out = {}
    for node in lowered.stochastic:
        if not node.mechanism.has_params:
            out[node.name] = {}
        elif params is None or node.name not in params:
            raise GenDataError(f"'{node.name}' is made by a trained {node.mechanism.describe()['mechanism']} mechanism: "
                               f"pass its parameters, e.g. infer(data, params=fit.params)", node.var.span)
        else:
            out[node.name] = params[node.name]
    return out


def _prepare(program, data: Mapping[str, Any], params):
    """(lowered, arrays, node params, names of conditioned nodes) for one data set."""
    lowered = program.lowered(data)
    model, dims = lowered.model, lowered.dim_values
    inputs = [v.name for v in model.by_role("input") if v.name not in dims]
    observed = [v.name for v in model.by_role("observed")]
    stochastic = [n.name for n in lowered.stochastic]
    missing = [o for o in observed if o not in data]
    if missing:
        raise GenDataError(f"infer needs the observed variable(s) {', '.join(map(repr, missing))} in the data "
                           f"(model '{model.name}')", model[missing[0]].span)
    arrays, _ = prepare(lowered, data, inputs, batched=False, allowed=[*inputs, *dims, *stochastic])
    conditioned = tuple(n for n in stochastic if n in data)
    return lowered, arrays, _node_params(lowered, params), conditioned


def log_joint(program, data: Mapping[str, Any], params: Mapping[str, Any] | None = None,
              precision: str = "double") -> tuple[LogJoint, dict, dict]:
    """The :class:`LogJoint` of ``program``'s latents given ``data`` (single examples), with the
    checked data arrays and node parameters to call it with.

    Returns
    -------
    (joint, arrays, params):
        ``joint.logdensity(z, arrays, params)`` is the log joint at the unconstrained point ``z``
        of shape ``(joint.dim,)``. Call it inside ``jax.enable_x64(True)`` for double precision.
    """
    with jax.enable_x64(precision == "double"):
        lowered, arrays, node_params, conditioned = _prepare(program, data, params)
        return _joint(program, lowered, conditioned, arrays, node_params), arrays, node_params


def _joint(program, lowered, conditioned, arrays, params) -> LogJoint:
    key = ("joint", lowered.dims, conditioned)
    cache = program_cache(program)
    if key not in cache:
        cache[key] = LogJoint(lowered, conditioned, arrays, params)
    return cache[key]


def _options(options: Mapping[str, Any]) -> dict:
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise GenDataError(f"infer() has no option '{unknown[0]}'{did_you_mean(unknown[0], OPTIONS)} "
                           f"(options: {', '.join(OPTIONS)})")
    out = {"thin": 1, "init": None, "init_tries": 100, "precision": "double", "chain_method": "vectorized",
           "devices": None, "progress": None, "log_marginal": False, **options}
    if out["precision"] not in ("double", "single"):
        raise GenDataError(f"precision must be 'double' or 'single', got {out['precision']!r}")
    if out["chain_method"] not in ("vectorized", "sequential"):
        raise GenDataError(f"chain_method must be 'vectorized' or 'sequential', got {out['chain_method']!r}")
    lm = out["log_marginal"]
    if not (isinstance(lm, bool) or (isinstance(lm, (int, np.integer)) and 2 <= lm <= MAX_PARTICLES)):
        raise GenDataError(f"log_marginal must be True, False or a number of SMC particles in 2..{MAX_PARTICLES}, "
                           f"got {lm!r}")
    return out


def _mesh(opts: dict, num_chains: int):
    """The device mesh the chains are split across (None on one device)."""
    if opts["devices"] is None:
        return None

    if jax.process_count() > 1:
        raise GenDataError(f"infer(devices=...) splits the chains across the devices of one host; this run has "
                           f"{jax.process_count()} processes (jax.distributed), which infer does not support yet")
    mesh = make_mesh(opts["devices"])
    check_divisible(num_chains, mesh, "num_chains")
    return mesh


def _check_counts(num_chains, num_samples, num_warmup, thin, init_tries):
    for name, value, low in (("num_chains", num_chains, 1), ("num_samples", num_samples, 1),
                             ("num_warmup", num_warmup, 0), ("thin", thin, 1), ("init_tries", init_tries, 1)):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < low:
            raise GenDataError(f"{name} must be an integer >= {low}, got {value!r}")


#: working copies of the latent vector a chain keeps besides its draws (position, gradient,
#: momentum, proposal, the NUTS tree's ends, mass-matrix estimates...)
_WORKING_COPIES = 32
#: bytes of the warm-up schedule and statistics per warm-up step
_BYTES_PER_WARMUP_STEP = 64


def _check_memory(dim: int, num_chains: int, num_samples: int, num_warmup: int, double: bool) -> None:
    """Refuse, before compiling, a run whose draws, chain states and warm-up schedule would not fit
    in the host's memory."""
    itemsize = 8 if double else 4
    need = itemsize * dim * num_chains * (num_samples + _WORKING_COPIES) + _BYTES_PER_WARMUP_STEP * num_warmup
    check_host_memory(need, f"{num_chains} chains of {num_samples} draws (after {num_warmup} warm-up steps) of "
                            f"{dim:,} latent numbers", "fewer chains, samples or warm-up steps, or a smaller model")


def infer(program, data: Mapping[str, Any], key: jax.Array, num_chains: int = 4, num_samples: int = 1000,
          num_warmup: int = 1000, kernel: str = "auto", params: Mapping[str, Any] | None = None,
          **options) -> Posterior:
    """Draw from the posterior of ``program``'s latent variables given ``data``.

    Parameters
    ----------
    program:
        A compiled :class:`~gendsl.program.Program`.
    data:
        One data set, no batch axis: every input and observed variable (``y`` of type
        ``real[J]`` has shape ``(J,)``), and any latent variable to condition on.
    key:
        PRNG key.
    num_chains, num_samples, num_warmup:
        Chains, kept draws per chain, warm-up transitions per chain.
    kernel:
        ``"auto"`` (NUTS), ``"nuts"``, ``"hmc"``, ``"mala"`` or ``"langevin"``.
    params:
        Parameters of trained nodes (``fit.params``), needed when the model has any.
    **options:
        ``target_accept`` (0.95 for NUTS, 0.9 for HMC, 0.574 for MALA), ``max_tree_depth`` (10), ``mass`` (``"auto"``:
        :func:`~gendsl.numerics.adaptation.resolve`; or ``"dense"``, ``"diagonal"``, ``"fisher"``,
        ``"lowrank"``: :data:`~gendsl.numerics.adaptation.METRICS`), ``step_size`` (the initial one; fixed for Langevin),
        ``num_integration_steps`` (HMC, 16), ``thin`` (1), ``init`` (name -> starting value, in
        the variable's space), ``init_tries`` (random starts tried per chain, 100),
        ``precision`` (``"double"``, default, or ``"single"``) and ``chain_method``
        (``"vectorized"``, default: the chains advance together, fastest per transition on small
        models; ``"sequential"``: one after the other, a program that compiles faster) and
        ``log_marginal`` (True, or a number of particles, default 2000: also estimate
        ``log p(data)`` with its standard error by tempered SMC from a Gaussian fitted to the draws,
        :mod:`gendsl.inference.marginal`; in ``.log_marginal_likelihood``), ``devices`` (split
        the chains across this many devices, or ``"all"``, on a 1-D mesh named ``data``: each device runs ``num_chains / devices`` whole chains, the data and
        parameters are replicated; ``num_chains`` must be a multiple of the count. Every chain
        has the same key, start and kernel as on one device, so these are the same chains: with
        ``chain_method="sequential"`` the draws are bit for bit the one-device draws; vectorized,
        XLA sums some reductions of a smaller batch in another order, and the draws agree up to
        rounding, which a chaotic posterior (a funnel such as eight schools) amplifies over many
        transitions until the draws differ while remaining valid. On a CPU-only machine, simulate
        devices with ``XLA_FLAGS=--xla_force_host_platform_device_count=N``) and ``progress``
        (one live line per chain on stderr: transitions, warm-up or sampling, divergences so
        far; default None: when stderr is a terminal).

    Returns
    -------
    Posterior
        ``.samples[name]`` of shape ``(num_chains, num_samples, *shape)`` for every latent and
        every deterministic quantity depending on one; ``.summary()``; ``.divergences``.

    Raises
    ------
    GenDataError
        Missing or malformed data, unknown options, more ``devices`` than exist, or
        ``num_chains`` not a multiple of ``devices``.
    GenSemanticError
        A discrete latent, or a node without a likelihood.
    GenRuntimeError
        No finite starting point after ``init_tries`` tries (names the variables at fault).
    """
    opts = _options(options)
    _check_counts(num_chains, num_samples, num_warmup, opts["thin"], opts["init_tries"])
    config = kernels.kernel_config(kernel, **{k: opts.get(k) for k in kernels.KERNEL_OPTIONS})
    mesh = _mesh(opts, num_chains)  # before any work: a bad device count fails at once
    with jax.enable_x64(opts["precision"] == "double"):
        lowered, arrays, node_params, conditioned = _prepare(program, data, params)
        joint = _joint(program, lowered, conditioned, arrays, node_params)
        if not joint.latents and not joint.discrete:
            raise GenDataError(f"nothing to infer: every stochastic variable of '{lowered.model.name}' is in the data",
                               lowered.model.span)
        if not joint.latents:
            raise GenDataError(f"the only latents of '{lowered.model.name}' are discrete ({', '.join(joint.discrete)}) "
                               f"and summed out, so there is nothing for {kernel} to sample; their conditional "
                               f"probabilities are joint.conditionals(...) of gendsl.inference.log_joint",
                               lowered.model.span)
        _check_memory(joint.dim, num_chains, num_samples, num_warmup, opts["precision"] == "double")
        init_key, run_key = jax.random.split(key)
        z0 = starts(program, joint, init_key, arrays, node_params, num_chains, opts["init_tries"], opts["init"])
        args = (run_key, z0, arrays, node_params)
        if mesh is not None:

            args = (jax.device_put(run_key, replicated(mesh)), jax.device_put(z0, sharded(mesh)),
                    jax.device_put(arrays, replicated(mesh)), jax.device_put(node_params, replicated(mesh)))
        show = progress.wanted(opts["progress"])
        compiled, compile_seconds = runner(program, joint, config, num_chains, num_samples, num_warmup,
                                            opts["thin"], opts["chain_method"], mesh, show, args)
        t0 = time.perf_counter()
        with progress.showing(num_chains, num_warmup, num_warmup + num_samples * opts["thin"]) if show \
                else contextlib.nullcontext():
            draws, positions, stats, tuning = jax.block_until_ready(compiled(*args))
        seconds = time.perf_counter() - t0
        if _observe is not None:
            _observe(compiled, draws, stats, tuning)
        observed = set(joint.observed) | set(conditioned)
        post = Posterior(
            samples={k: np.asarray(draws[k]) for k in (*joint.latents, *joint.discrete, *joint.tracked, *joint.generated)},
            latents=(*joint.latents, *joint.discrete),
            generated=joint.generated,
            predictive=joint.predictive,
            probabilities={k: np.asarray(draws[f"{k} probabilities"]) for k in joint.reported},
            deterministic=joint.tracked,
            diverging=np.asarray(stats["is_divergent"]),
            step_size=np.asarray(tuning["step_size"]),
            inverse_mass_matrix=np.asarray(tuning["inverse_mass_matrix"]),
            tree_depth=np.asarray(stats["tree_depth"]),
            num_steps=np.asarray(stats["num_steps"]),
            acceptance_rate=np.asarray(stats["acceptance_rate"]),
            kernel=config.describe(),
            num_warmup=num_warmup,
            max_tree_depth=config.max_tree_depth,
            compile_seconds=compile_seconds,
            sampling_seconds=seconds,
            energy=np.asarray(stats["energy"]),
            lp=np.asarray(stats["logdensity"]),
            observed_data={k: np.asarray(v) for k, v in arrays.items() if k in observed},
            constant_data={k: np.asarray(v) for k, v in arrays.items() if k not in observed},
            pointwise=pointwise(program, joint, positions, arrays, node_params, opts["precision"]),
        )
        if opts["log_marginal"]:
            particles = 2000 if opts["log_marginal"] is True else int(opts["log_marginal"])
            post.log_marginal_likelihood = log_marginal_likelihood(
                joint, np.asarray(positions).reshape(-1, joint.dim), arrays, node_params, jax.random.fold_in(key, 2),
                particles=particles)
    _warn(post, config)
    return post


def _stuck_chains(post: Posterior) -> list[int]:
    """The chains whose continuous latents never changed after warm-up (more than one draw)."""
    if post.num_samples < 2:
        return []
    moved = np.zeros(post.num_chains, bool)
    for name in (n for n in post.latents if n not in post.probabilities):  # the discrete ones are redrawn
        x = post.samples[name].reshape(post.num_chains, post.num_samples, -1)
        moved |= np.any(x != x[:, :1], axis=(1, 2))
    return [int(c) for c in np.flatnonzero(~moved)]


def _stranded_chains(post: Posterior) -> tuple[list[int], np.ndarray]:
    """The chains whose median log density lies more than :data:`LP_GAP` nats below the best
    chain's, and every chain's median log density (shape ``(num_chains,)``)."""
    median = np.median(np.asarray(post.lp, dtype=np.float64), axis=1)
    if median.size < 2 or not np.all(np.isfinite(median)):
        return [], median
    return [int(c) for c in np.flatnonzero(median < median.max() - LP_GAP)], median


def _warn(post: Posterior, config) -> None:
    div = post.divergences
    if int(div):
        warnings.warn(f"{int(div)} divergent transition(s) after warm-up (per chain: {div.per_chain.tolist()}): the "
                      f"draws may be biased; reparameterise (e.g. non-centred) or raise target_accept", stacklevel=3)
    if config.name == "nuts":
        hits = int((post.tree_depth >= config.max_tree_depth).sum())
        if hits:
            warnings.warn(f"{hits} transition(s) reached the maximum tree depth {config.max_tree_depth}: "
                          f"raise max_tree_depth or reparameterise", stacklevel=3)
    stuck = _stuck_chains(post)
    if stuck:
        steps = ", ".join(f"{post.step_size[c]:.2g}" for c in stuck)
        warnings.warn(f"chain(s) {stuck} did not move after warm-up (step size {steps}, mean acceptance "
                      f"{float(post.acceptance_rate[stuck].mean()):.2f}): they sit where they started; give starting "
                      f"values (infer(init={{...}}), gendsl infer --init NAME=VALUE) or reparameterise", stacklevel=3)
    stranded, median = _stranded_chains(post)
    if stranded:
        warnings.warn(f"chain(s) {stranded} sit at a log density far below the best chain's (median "
                      f"{', '.join(f'{median[c]:.3g}' for c in stranded)} against {median.max():.6g}): they are stuck "
                      f"where the posterior has no mass, likely where they started; give starting values "
                      f"(infer(init={{...}}), gendsl infer --init NAME=VALUE) or restrict the latents' types",
                      stacklevel=3)
    low = [round(float(b), 2) for b in post.e_bfmi if b < E_BFMI_LOW]
    if low:
        warnings.warn(f"E-BFMI below {E_BFMI_LOW} in {len(low)} chain(s) ({low}): the sampler explores the energy "
                      f"levels poorly (heavy tails or a funnel); reparameterise (e.g. non-centred)", stacklevel=3)
    lp = np.asarray(post.lp, dtype=np.float64)
    if lp.size > 1 and np.all(np.isfinite(lp)) and np.ptp(lp) <= 1e-9 * max(1.0, float(np.abs(lp).max())):
        warnings.warn(f"the log density is the same at every draw ({float(lp.flat[0]):.6g}): the target is flat (no "
                      f"gradient information: an energy such as E = 0, or a prior too wide to vary, such as "
                      f"normal(0, 1e38)), so it is improper and the chains drift; give the latents proper priors",
                      stacklevel=3)
    for problem in convergence_problems(post.summary(), post.latents, post.num_chains):
        warnings.warn(problem, stacklevel=3)
