"""The compiled programs of posterior inference, and where they are kept.

Per :class:`~gendsl.program.Program` (weakly), by model dimensions, latents, settings and the
shapes of the arguments: the starting-point search (:func:`starts`), the warm-up + sampling +
constrain program of every chain (:func:`runner`, on one device or split across a mesh with
``shard_map``) and the pointwise log-likelihood (:func:`pointwise`). The first two are also kept
on disk as traced programs (:mod:`gendsl.numerics.exported`) under :func:`trace_description`, so a
new process skips tracing them.
"""

from __future__ import annotations

import time
import weakref
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from gendsl.inference import progress
from gendsl.inference.joint import LogJoint
from gendsl.numerics import exported, mcmc
from gendsl.numerics.devices import AXIS, replicated, sharded

__all__ = ["program_cache", "signature", "chains", "starts", "runner", "trace_description", "pointwise"]


#: per program: compiled functions and log joints, by model dimensions and settings
_CACHE: "weakref.WeakKeyDictionary[Any, dict]" = weakref.WeakKeyDictionary()


def program_cache(program) -> dict:
    return _CACHE.setdefault(program, {})


def signature(tree) -> tuple:
    leaves, structure = jax.tree_util.tree_flatten(tree)
    return structure, tuple((tuple(jnp.shape(x)), str(jnp.result_type(x))) for x in leaves)


def shard_map(fn, mesh, in_specs, out_specs):
    """``jax.shard_map`` without the replication check (the warm-up's ``lax.cond`` branches mix
    per-device and replicated values), on old and new JAX."""
    if hasattr(jax, "shard_map"):
        return jax.shard_map(fn, mesh=mesh, in_specs=in_specs, out_specs=out_specs, check_vma=False)
    from jax.experimental.shard_map import shard_map

    return shard_map(fn, mesh=mesh, in_specs=in_specs, out_specs=out_specs, check_rep=False)


def chains(config, joint: LogJoint, keys, z0, arrays, params, num_warmup, num_samples, thin, chain_method, mesh,
            show: bool):
    """Warm-up and sampling of the chains whose transition keys are ``keys`` ``(C, T)`` and starts
    ``z0`` ``(C, d)``: ``vmap``-ed (``"vectorized"``) or one after the other (``"sequential"``,
    ``lax.map``). Every chain has its own row of keys, so a chain is the same chain in every
    layout. With a ``mesh`` (``shard_map``) each device runs its share of the chains with no
    communication between devices: sequential chains are bit for bit the one-device ones,
    vectorized ones agree up to the rounding of a smaller batch. With ``show``, each chain reports
    its progress to :func:`gendsl.inference.progress.report`."""
    from jax.sharding import PartitionSpec

    report = progress.report if show else None

    def local(keys, z0, ids, arrays, params):
        def run(keys, z0, ids, method):
            return mcmc.run_chains(config, lambda q: joint.logdensity(q, arrays, params), keys, z0, num_warmup,
                                   num_samples, thin, method, report, ids)

        if chain_method == "vectorized":
            return run(keys, z0, ids, "vectorized")
        one = lambda chain: jax.tree_util.tree_map(lambda x: x[0], run(*(c[None] for c in chain), "sequential"))
        return jax.lax.map(one, (keys, z0, ids))

    ids = jnp.arange(z0.shape[0])
    if mesh is None:
        return local(keys, z0, ids, arrays, params)

    split, whole = PartitionSpec(AXIS), PartitionSpec()
    return shard_map(local, mesh, (split, split, split, whole, whole), split)(keys, z0, ids, arrays, params)


def starts(program, joint: LogJoint, key, arrays, params, num_chains: int, tries: int, init) -> jax.Array:
    """One starting point per chain with a finite log-density and gradient: ``(chains, dim)``."""
    dim = joint.dim
    dtype = jnp.result_type(float)
    fixed = jnp.zeros(dim, dtype)
    mask = jnp.zeros(dim, bool)
    if init:
        fixed = joint.unconstrain(init, fixed, arrays, params)
        for b in joint.blocks:
            if b.name in init:
                mask = mask.at[b.offset:b.offset + b.size].set(True)
    cache, ckey = program_cache(program), ("starts", joint.lowered.dims, joint.latents, num_chains, tries, signature((arrays, params)))
    if ckey not in cache:
        def starts(key, fixed, mask, arrays, params):
            z = mcmc.uniform_starts(key, (num_chains, tries, dim), dtype)
            z = jnp.where(mask, fixed, z)
            value, grad = jax.vmap(jax.vmap(jax.value_and_grad(lambda q: joint.logdensity(q, arrays, params))))(z)
            ok = jnp.isfinite(value) & jnp.all(jnp.isfinite(grad), axis=-1)
            first = jnp.argmax(ok, axis=1)
            return z[jnp.arange(num_chains), first], jnp.any(ok, axis=1)

        args = (key, fixed, mask, arrays, params)
        description = trace_description(program, joint, "starts", num_chains, tries)
        cache[ckey] = exported.compiled("starts", description, starts, args, store=description is not None)
    z, ok = cache[ckey](key, fixed, mask, arrays, params)
    if not bool(np.all(np.asarray(ok))):
        joint.check_finite(z[int(np.argmin(np.asarray(ok)))], arrays, params)
    return z


def runner(program, joint: LogJoint, config, num_chains, num_samples, num_warmup, thin, chain_method, mesh, show,
            args):
    """The compiled warm-up + sampling + constrain program, and the seconds spent compiling it.

    With a device ``mesh`` the chains are split across its devices (data and parameters
    replicated), each device running its share with no communication (:func:`_chains`).
    """
    cache = program_cache(program)
    ckey = ("run", joint.lowered.dims, joint.latents, config, num_chains, num_samples, num_warmup, thin, chain_method,
            mesh, show, signature(args))
    if ckey in cache:
        return cache[ckey], 0.0

    def run(key, z0, arrays, params):
        keys = mcmc.transition_keys(key, num_chains, num_warmup + num_samples * thin)
        positions, stats, tuning = chains(config, joint, keys, z0, arrays, params, num_warmup, num_samples, thin,
                                           chain_method, mesh, show)
        keys = jax.random.split(jax.random.fold_in(key, 1), positions.shape[:2])
        per_draw = jax.vmap(jax.vmap(lambda z, k: (joint.constrain(z, arrays, params, k),
                                                   joint.conditionals(z, arrays, params))))
        draws, conditionals = per_draw(positions, keys)
        draws = {**draws, **{f"{name} probabilities": jnp.exp(lp) for name, lp in conditionals.items()}}
        return draws, positions, stats._asdict(), tuning._asdict()  # plain dicts: jax.export stores them

    t0 = time.perf_counter()
    if mesh is None:
        description = trace_description(program, joint, "run", config, num_chains, num_samples, num_warmup, thin,
                                   chain_method)
        cache[ckey] = exported.compiled("infer", description, run, args, store=description is not None and not show)
    else:
        jitted = jax.jit(run, in_shardings=(replicated(mesh), sharded(mesh), replicated(mesh), replicated(mesh)),
                         out_shardings=sharded(mesh))
        cache[ckey] = jitted.lower(*args).compile()
    return cache[ckey], time.perf_counter() - t0


def trace_description(program, joint: LogJoint, *settings):
    """What a sampler's trace depends on beyond its arguments' shapes, for the store of traced
    programs (:mod:`gendsl.numerics.exported`): the model as written, its dimensions, the latents
    and the settings. None (not stored) when a node reads trained parameters or another run."""
    lowered = joint.lowered
    if any(node.mechanism.has_params or node.var.mechanism == "prior" for node in lowered.stochastic):
        return None
    model = lowered.model
    written = model.span.source or model.statements  # the source text, or a builder model's statements
    return (model.name, written, sorted(program.dims.items()), lowered.dims, joint.latents, joint.discrete, settings)


def pointwise(program, joint: LogJoint, positions, arrays, params, precision: str):
    """A thunk computing the pointwise log-likelihood of every draw: name -> ``(C, N, *batch)``
    numpy arrays (one program, compiled on first use and cached per model and shapes)."""
    def compute() -> dict[str, np.ndarray]:
        with jax.enable_x64(precision == "double"):
            cache = program_cache(program)
            ckey = ("log_likelihood", joint.lowered.dims, joint.latents, signature((positions, arrays, params)))
            if ckey not in cache:
                cache[ckey] = jax.jit(jax.vmap(jax.vmap(joint.log_likelihood, (0, None, None)), (0, None, None)))
            return {k: np.asarray(v) for k, v in cache[ckey](positions, arrays, params).items()}

    return compute
