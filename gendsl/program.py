"""Program: the compiled entry points of a model.

``init · loss · fit · sample · log_prob · log_prob_kind · infer · describe · save · load_params``.
The joint log-density is the sum over stochastic nodes and ``target +=`` terms, sampling is
ancestral in topological order (refused when the model has ``target +=`` terms), and the training loss is the sum of node losses with parents teacher-forced.
"""

from __future__ import annotations

import functools
from functools import cached_property
from pathlib import Path
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np
import optax

from gendsl.compiler.bind import prepare, prepare_given
from gendsl.compiler.describe import describe
from gendsl.compiler.lower import Lowered, bind_dims, lower
from gendsl.compiler.programs import ancestral_sampler, joint_log_prob, joint_loss, joint_train_loss
from gendsl.core.model import Model
from gendsl.core.signatures import learned_spec
from gendsl.errors import GenDataError, GenRuntimeError
from gendsl.inference import infer
from gendsl.mechanisms import weakest_kind
from gendsl.numerics import params_io
from gendsl.numerics.checkpoint import data_digest, differences, has_checkpoint, load_checkpoint, save_checkpoint
from gendsl.numerics.devices import check_divisible, check_host_memory, globalize, make_mesh, replicated, sharded
from gendsl.numerics.runtime_checks import with_user_errors
from gendsl.numerics.train import FitResult, NonFiniteLoss, Validation, build_trainer, run
from gendsl.registry import MECHANISMS, SIGNATURES

__all__ = ["Program"]

#: arrays the size of the draws that sampling holds at once (draws, noise, a solver's stages...)
_SAMPLE_COPIES = 16


def _check_resume_point(folder, step: int, steps: int, losses: np.ndarray, saved: dict | None) -> None:
    """Refuse a checkpoint whose step is outside ``[0, steps]``, whose losses are not one a step
    so far, or whose validation curve (``saved["validation"]``, when validating) is incomplete."""
    curve = saved.get("validation") if saved is not None else None
    curve_ok = saved is None or (isinstance(curve, dict) and isinstance(curve.get("steps"), list)
                                 and isinstance(curve.get("losses"), list) and len(curve["steps"]) == len(curve["losses"])
                                 and isinstance(curve.get("since"), int) and isinstance(curve.get("best_step"), int)
                                 and (curve["best_step"] == 0 or isinstance(curve.get("best_loss"), (int, float))))
    if not 0 <= step <= steps or len(losses) != step or not curve_ok:
        raise GenDataError(f"the checkpoint in {folder} is damaged (it is at step {step} of {steps} with "
                           f"{len(losses)} losses{'' if curve_ok else ' and an incomplete validation curve'}): "
                           f"start afresh (--force)")


class Program:
    """A compiled model. Build it with :func:`gendsl.compile`.

    ``load_source`` opens the sources of ``prior(...)`` nodes (see
    :class:`~gendsl.mechanisms.base.NodeContext`); :func:`gendsl.compile` passes the run folders'.
    """

    def __init__(self, model: Model, dims: Mapping[str, int] | None = None, load_source: Callable | None = None):
        self.model = model
        self.dims = dict(dims or {})
        self.load_source = load_source
        for var in model.variables():
            if var.stochastic:
                MECHANISMS.lookup(var.mechanism, var.rhs.span if var.rhs is not None else var.span)
        self._lowered: dict[tuple, Lowered] = {}
        self._jitted: dict = {}

    # -- lowering ----------------------------------------------------------------------------------
    def lowered(self, data: Mapping[str, Any] | None = None) -> Lowered:
        """The graph lowered for the dimensions known now (compile-time ``dims`` and ``data``)."""
        if data is not None and not isinstance(data, Mapping):
            example = next((v.name for v in self.model.by_role("observed", "input")), "x")
            raise GenDataError(f"the data must be a dict from variable name to array (e.g. {{'{example}': array}}), "
                               f"got {type(data).__name__}", self.model.span)
        dims = {**self.dims, **dict(bind_dims(self.model, data or {}))}
        key = tuple(sorted(dims.items()))
        if key not in self._lowered:
            self._lowered[key] = lower(self.model, dims, load_source=self.load_source)
        return self._lowered[key]

    @cached_property
    def plan(self) -> Lowered:
        """The graph lowered for the dimensions known at compile time (missing ones as 1)."""
        try:
            return self.lowered()
        except GenDataError:
            return lower(self.model, self.dims, placeholder=1, load_source=self.load_source)

    @property
    def log_prob_kind(self) -> str:
        """The joint's likelihood kind: the weakest of its nodes' kinds."""
        return weakest_kind(n.mechanism.kind for n in self.plan.modelled)

    # -- entry points ------------------------------------------------------------------------------
    def init(self, key: jax.Array, data: Mapping[str, Any] | None = None) -> dict:
        """Fresh parameters: a dict from variable name to that node's parameter PyTree."""
        lowered = self.lowered(data)
        keys = jax.random.split(key, max(1, len(lowered.stochastic)))
        return {node.name: node.mechanism.init(k) for node, k in zip(lowered.stochastic, keys)}

    def _fit_required(self, lowered: Lowered) -> list[str]:
        need = [v.name for v in self.model.by_role("observed", "latent", "input")
                if v.name not in lowered.dim_values and v.scope != "generated"]
        latents = [v.name for v in self.model.by_role("latent") if v.scope != "generated"]
        return need, latents

    def _prepare_batched(self, data, lowered, purpose: str):
        required, latents = self._fit_required(lowered)
        missing_latent = [l for l in latents if l not in data]
        if missing_latent:
            raise GenDataError(f"{purpose} needs a value for every modelled variable, and "
                               f"{', '.join(repr(m) for m in missing_latent)} {'is' if len(missing_latent) == 1 else 'are'} "
                               f"latent: use infer() for a posterior over latent variables", self.model[missing_latent[0]].span)
        allowed = [*required, *lowered.dim_values]
        derived = {v.name for v in self.model.variables() if v.role == "deterministic" or v.scope == "generated"}
        data = {k: v for k, v in data.items() if k not in derived}  # recomputed, or outside the density
        arrays, n = prepare(lowered, data, required, batched=True, allowed=allowed)
        return arrays, n

    def check_data(self, data: Mapping[str, Any]) -> None:
        """Raise :class:`GenDataError` if ``data`` cannot train this model (nothing is traced)."""
        self._prepare_batched(data, self.lowered(data), "fit")

    def loss(self, params: dict, data: Mapping[str, Any], key: jax.Array) -> jax.Array:
        """The training loss on ``data``: sum over nodes, parents teacher-forced (scalar)."""
        lowered = self.lowered(data)
        arrays, _ = self._prepare_batched(data, lowered, "loss")
        return joint_loss(lowered)(params, arrays, key)

    @with_user_errors
    def fit(self, data: Mapping[str, Any], steps: int = 2000, key: jax.Array | None = None, batch_size: int = 256,
            optimizer: optax.GradientTransformation | None = None, params: dict | None = None,
            progress: bool = True, checkpoint_dir: str | Path | None = None, checkpoint_every: int | None = None,
            resume: bool = False, max_retries: int = 3, lr_backoff: float = 0.5,
            devices: int | str | None = None, validation: float | Mapping[str, Any] | None = None,
            eval_every: int | None = None, patience: int | None = None,
            fingerprint: Mapping[str, Any] | None = None, log: Callable[[dict], None] | None = None) -> FitResult:
        """Train every node on ``data`` (arrays with a leading example axis).

        Parameters
        ----------
        data:
            Variable name -> array of shape ``(n, *event_shape)``.
        steps, batch_size:
            Optimiser steps and examples per step.
        key:
            PRNG key (initialisation, batches, stochastic losses).
        optimizer:
            Any optax optimiser; ``optax.adam(1e-3)`` when None.
        params:
            Start from these parameters instead of a fresh ``init``.
        checkpoint_dir, checkpoint_every, resume:
            Write the whole training state to ``checkpoint_dir`` every ``checkpoint_every`` steps
            (atomically); with ``resume=True`` continue from the checkpoint there. A resumed run
            ends bitwise equal to an uninterrupted one with the same key.
        max_retries, lr_backoff:
            On a non-finite loss, roll back and multiply the learning rate by ``lr_backoff``, at
            most ``max_retries`` times in a row; then raise :class:`GenRuntimeError` carrying the
            last good parameters as ``.params``.
        devices:
            Train data-parallel on this many devices (or ``"all"``); the batch size must be a
            multiple. Same key and batch give the same result as on one device. In a multi-host
            run (``jax.distributed``) every device of every host is used and ``data`` is this
            process's shard of the data (equal sizes on every process).
        validation, eval_every, patience:
            A share of ``data`` to hold out (e.g. ``0.1``; the rest trains) or a data dict of its
            own. Its loss (each node's own objective with its finalized parameters: the NLL for
            likelihood models) is evaluated every ``eval_every`` steps (default: about 100 times
            a run, at least once an epoch), the parameters of the best evaluation are returned,
            and training stops after ``patience`` evaluations without improvement (None: never).
        log:
            Called as ``log(row)`` every few hundred steps (every ``eval_every`` with validation):
            ``row = {"step", "loss" (the mean since the last row), "validation_loss" (or None),
            "seconds"}``; ``gendsl fit`` writes the rows to ``training_log.csv``.
        fingerprint:
            What else identifies this run (JSON values: the model's text, the optimiser's
            settings...). Checkpoints record it with the steps, batch size, data digest and key,
            and a resume whose record differs in anything is refused, naming what differs.

        Returns
        -------
        FitResult
            ``.params``, ``.losses`` (shape ``(steps taken,)``), ``.state`` (the last state),
            ``.train_seconds``, ``.validation`` (the :class:`~gendsl.numerics.train.ValidationCurve`).
        """
        key = jax.random.key(0) if key is None else key
        steps = int(steps)
        if steps < 0 or batch_size <= 0:
            raise GenDataError(f"steps must be >= 0 and batch_size > 0, got steps={steps}, batch_size={batch_size}")
        lowered = self.lowered(data)
        arrays, n = self._prepare_batched(data, lowered, "fit")
        key, val_key = jax.random.split(key) if validation is not None else (key, None)
        arrays, n, held = self._validation_split(lowered, arrays, n, validation, val_key)
        digest = data_digest({**arrays, **({"validation " + k: v for k, v in held.items()} if held else {})})
        mesh = make_mesh(devices if jax.process_count() == 1 else "all")
        if jax.process_count() > 1:  # ``data`` is this process's shard: assemble the global arrays
            arrays, n = globalize(arrays, mesh), n * jax.process_count()
        init_key, state_key, run_key = jax.random.split(key, 3)
        params = self.init(init_key, data) if params is None else params
        groups, labels, node_state = self._training_parts(lowered, params, state_key)
        init, step, chunks = self._trainer(lowered, optimizer, groups, labels)
        state, losses = init(params, node_state), None
        record = {"steps": steps, "batch_size": batch_size, "n": n, "data": digest,
                  "key": np.asarray(jax.random.key_data(key)).tolist(), **(fingerprint or {})}
        monitor = None
        if held is not None:
            every = eval_every or max(1, min(200, max(n // min(batch_size, n), steps // 100)))
            if every < 1 or (patience is not None and patience < 1):
                raise GenDataError(f"eval_every and patience must be at least 1, got {eval_every}, {patience}")
            monitor = Validation(functools.partial(self._validation_loss(lowered), held, val_key), int(every),
                                 patience)
            record.update(eval_every=int(every), patience=patience)
        tracking = None
        if resume and checkpoint_dir is not None and has_checkpoint(checkpoint_dir):
            template = (state, state) if monitor is not None else state
            stored, losses, saved = load_checkpoint(checkpoint_dir, template)
            differ = differences(saved, record)
            if differ:
                raise GenDataError(f"the checkpoint in {checkpoint_dir} was written by a different run "
                                   f"({'; '.join(differ)}): resume with the same command and data, or start afresh")
            state = stored[0] if monitor is not None else stored
            _check_resume_point(checkpoint_dir, int(state.step), steps, losses, saved if monitor is not None else None)
            if monitor is not None:
                tracking = {**saved["validation"], "best_state": stored[1]}
        save = None
        if checkpoint_dir is not None:
            def save(s, l, seen):
                if seen is None:
                    save_checkpoint(checkpoint_dir, s, l, record)
                else:  # the best state beside the last, and the curve in the record
                    curve = {k: v for k, v in seen.items() if k != "best_state"}
                    save_checkpoint(checkpoint_dir, (s, seen["best_state"]), l, {**record, "validation": curve})
        try:
            state, losses, seconds, curve = run(step, state, arrays, n, steps=steps, key=run_key,
                                                batch_size=batch_size, losses=losses, progress=progress,
                                                checkpoint=save, checkpoint_every=checkpoint_every,
                                                max_retries=max_retries, lr_backoff=lr_backoff, mesh=mesh,
                                                chunks=chunks, validation=monitor, tracking=tracking, log=log)
        except NonFiniteLoss as err:
            err.params = self.finalize(err.state.params, err.state.node_state, lowered)
            raise
        best = curve.best_state if curve is not None else state
        return FitResult(self.finalize(best.params, best.node_state, lowered), losses, state, seconds, curve)

    def _validation_split(self, lowered: Lowered, arrays: dict, n: int, validation, key):
        """``(train arrays, n_train, validation arrays or None)`` for ``fit(validation=...)``."""
        if validation is None:
            return arrays, n, None
        if isinstance(validation, Mapping):
            held, _ = self._prepare_batched(validation, lowered, "validation")
            return arrays, n, held
        if isinstance(validation, bool) or not isinstance(validation, (int, float)) or not 0.0 < validation < 1.0:
            raise GenDataError(f"validation= takes a share of the data in (0, 1) or a data dict, got {validation!r}")
        k = int(round(validation * n))
        if k < 1 or n - k < 1:
            raise GenDataError(f"validation={validation} of {n} examples leaves no example on one side; "
                               f"give more data or another share")
        perm = jax.random.permutation(key, n)

        def take(idx):
            return {name: a[idx] if a.ndim and a.shape[0] == n else a for name, a in arrays.items()}

        return take(perm[k:]), n - k, take(perm[:k])

    def _validation_loss(self, lowered: Lowered):
        """``loss(data, key, state) -> scalar``: every node's objective on ``data`` with its finalized
        parameters (compiled once per binding of the dimensions)."""
        cache_key = ("validation", lowered.dims)
        if cache_key not in self._jitted:
            objective = joint_loss(lowered)

            @jax.jit
            def loss(data, key, state):
                return objective(self.finalize(state.params, state.node_state, lowered), data, key)

            self._jitted[cache_key] = loss
        return self._jitted[cache_key]

    def _trainer(self, lowered: Lowered, optimizer, groups, labels):
        """``(init, step, chunks)`` for training ``lowered`` with ``optimizer``, made once per
        Program, binding of the dimensions, optimiser and parameter structure; ``chunks`` caches
        the compiled training chunks, so a later ``fit`` with the same shapes compiles nothing."""
        optimizer = self._default_optimizer if optimizer is None else optimizer
        key = ("fit", lowered.dims, id(optimizer), groups, jax.tree_util.tree_structure(labels),
               tuple(jax.tree_util.tree_leaves(labels)))
        if key not in self._jitted:  # the optimiser is kept with its entry, so its id is not reused
            init, step = build_trainer(joint_train_loss(lowered), optimizer, groups, labels)
            self._jitted[key] = (init, step, {}, optimizer)
        return self._jitted[key][:3]

    @cached_property
    def _default_optimizer(self) -> optax.GradientTransformation:
        """``optax.adam(1e-3)``, one object per Program (so that it keys the compiled trainer)."""
        return optax.adam(1e-3)

    def _training_parts(self, lowered, params, key):
        groups = ["main"]  # a group a node lists k times is updated k times per step
        for node in lowered.stochastic:
            for g in dict.fromkeys(node.mechanism.groups):
                groups += [g] * max(0, node.mechanism.groups.count(g) - groups.count(g))
        labels = {node.name: node.mechanism.param_labels(params.get(node.name, {})) for node in lowered.stochastic}
        keys = jax.random.split(key, max(1, len(lowered.stochastic)))
        node_state = {node.name: node.mechanism.init_train_state(k, params.get(node.name, {}))
                      for node, k in zip(lowered.stochastic, keys)}
        return tuple(groups), labels, node_state

    def finalize(self, params: dict, node_state: dict, lowered: Lowered | None = None) -> dict:
        """Parameters to use after training (each node's ``finalize``, e.g. an EMA), for the graph
        ``lowered`` (default: the plan's)."""
        lowered = self.plan if lowered is None else lowered
        return {n.name: n.mechanism.finalize(params.get(n.name, {}), node_state[n.name]) for n in lowered.stochastic}

    def sample(self, params: dict, key: jax.Array, n: int, data: Mapping[str, Any] | None = None,
               devices: int | str | None = None, given: Mapping[str, Any] | None = None) -> dict:
        """``n`` joint draws by ancestral sampling.

        ``data`` supplies inputs (and dimensions) the model needs; ``given`` clamps modelled
        variables to values (one value for every draw, or one per draw: ``{"label": 3}``), and the
        others are drawn ancestrally given them, so a variable conditioned on ``label`` is drawn
        for that class (its ancestors keep their own law: a posterior over them is ``infer``'s
        job). ``devices`` shards the draws across that many devices (``n`` must be a multiple; the
        draws equal the 1-device ones). Returns a dict from every modelled, deterministic and
        ``generated`` variable (drawn from the prior here) to an array ``(n, *shape)``; ``local``
        quantities are used on the way and not returned.
        """
        return self.sample_with_info(params, key, n, data, devices, given)[0]

    @with_user_errors
    def sample_with_info(self, params: dict, key: jax.Array, n: int, data: Mapping[str, Any] | None = None,
                         devices: int | str | None = None, given: Mapping[str, Any] | None = None) -> tuple[dict, dict]:
        """:meth:`sample` and what each node measured while sampling: ``(draws, info)``, ``info``
        mapping node names to dicts of arrays (e.g. ``"nfe"`` of an adaptive ODE solve)."""
        mesh = make_mesh(devices)
        check_divisible(n, mesh, "the number of draws")
        data = dict(data or {})
        lowered = self.lowered(data)
        per_draw = sum(int(np.prod(node.type.shape, dtype=np.int64)) for node in lowered.nodes)
        check_host_memory(4 * n * per_draw * _SAMPLE_COPIES, f"{n} draws of {per_draw:,} numbers (and their working arrays)",
                          "draw fewer at a time")
        if lowered.factors:
            raise GenRuntimeError(f"the model adds to its log density with 'target +=' ({lowered.factors[0].factor.label}), "
                                  f"which ancestral sampling cannot honour; use infer() for the posterior",
                                  lowered.factors[0].factor.span)
        inputs = [v.name for v in self.model.by_role("input") if v.name not in lowered.dim_values]
        arrays, m = prepare(lowered, data, inputs, batched=True, allowed=[*inputs, *lowered.dim_values])
        clamped, m_given = prepare_given(lowered, given or {})
        for what, count in (("inputs", m), ("given values", m_given)):
            if count not in (None, 1, n) and (arrays if what == "inputs" else clamped):
                raise GenDataError(f"the {what} hold {count} examples but {n} draws were asked for", self.model.span)
        fn = self._sampler(lowered, n, mesh, tuple(sorted(clamped)))
        arrays = {k: jnp.broadcast_to(v, (n, *v.shape[1:])) for k, v in {**arrays, **clamped}.items()}
        out, info = fn(params, key, arrays)
        return {k: v for k, v in out.items() if self.model[k].role != "input" and self.model[k].scope != "local"}, info

    def _sampler(self, lowered: Lowered, n: int, mesh=None, clamped: tuple[str, ...] = ()):
        cache_key = ("sample", lowered.dims, n, mesh, clamped)
        if cache_key not in self._jitted:
            draw = ancestral_sampler(lowered, n, clamped)
            if mesh is None:
                self._jitted[cache_key] = jax.jit(draw)
            else:
                self._jitted[cache_key] = jax.jit(draw, in_shardings=(replicated(mesh), replicated(mesh), sharded(mesh)),
                                                  out_shardings=(sharded(mesh), replicated(mesh)))
        return self._jitted[cache_key]

    @with_user_errors
    def log_prob(self, params: dict, data: Mapping[str, Any]) -> jax.Array:
        """Joint log-density of each example in ``data``, shape ``(n,)``; see :attr:`log_prob_kind`."""
        lowered = self.lowered(data)
        for node in lowered.modelled:
            if node.mechanism.kind == "unavailable":
                raise GenRuntimeError(f"log_prob is unavailable: '{node.name}' is made by "
                                      f"{node.mechanism.describe()['mechanism']}, which has no likelihood", node.var.span)
        arrays, n = self._prepare_batched(data, lowered, "log_prob")
        cache_key = ("log_prob", lowered.dims)
        if cache_key not in self._jitted:
            self._jitted[cache_key] = jax.jit(joint_log_prob(lowered))
        return self._jitted[cache_key](params, arrays)

    @with_user_errors
    def infer(self, data: Mapping[str, Any], key: jax.Array | None = None, num_chains: int = 4,
              num_samples: int = 1000, num_warmup: int = 1000, kernel: str = "auto", params: dict | None = None, **options):
        """Posterior draws of the latent variables given ``data`` (full options: :func:`gendsl.inference.infer`).

        ``data`` holds one data set without a batch axis (``y: real[J]`` has shape ``(J,)``);
        ``key`` defaults to ``jax.random.key(0)``; ``kernel`` is ``"auto"`` (NUTS), ``"nuts"``,
        ``"hmc"``, ``"mala"`` or ``"langevin"``; ``params`` are trained nodes' parameters.
        ``devices=N`` (or ``"all"``) splits the chains across N devices (``num_chains`` a multiple
        of N); with ``chain_method="sequential"`` the draws are bit for bit the one-device draws.

        Returns a :class:`~gendsl.inference.Posterior`: ``.samples[name]`` of shape
        ``(num_chains, num_samples, *shape)``, ``.summary()``, ``.divergences``.
        """
        return infer(self, data, key=jax.random.key(0) if key is None else key, num_chains=num_chains,
                     num_samples=num_samples, num_warmup=num_warmup, kernel=kernel,
                     params=params, **options)

    # -- the plan ----------------------------------------------------------------------------------
    def describe(self) -> str:
        """The plan: one row per node (mechanism, parents, loss, likelihood kind, sampler, cost)."""
        return describe(self.plan)

    # -- parameters on disk ------------------------------------------------------------------------
    def fingerprints(self) -> dict[str, str]:
        """Per modelled variable, what its parameters were trained for: its type and its resolved
        right-hand side without sampling-time options (see :func:`~gendsl.core.signatures.learned_spec`)."""
        return {v.name: f"{v.type} ~ {learned_spec(v.spec, SIGNATURES)!r}" for v in self.model.variables() if v.stochastic}

    def save(self, params: dict, path: str | Path) -> Path:
        """Write ``params`` to ``path`` (a folder; no pickle), with each node's fingerprint. Returns the folder."""
        dims = self.plan.dim_values if self.model.symbols <= set(self.dims) else self.dims
        return params_io.save(params, path, {"model": self.model.name, "dims": dims, "nodes": self.fingerprints()})

    def load_params(self, path: str | Path, data: Mapping[str, Any] | None = None) -> dict:
        """Read parameters written by :meth:`save` or by ``gendsl fit`` (its output folder).

        Each node's parameters are taken by name, so a model may reuse part of another's (a
        conditional model the ``x`` of a joint run); a node whose stored fingerprint differs from
        its own (another mechanism, network or option, even with equal shapes) is refused.
        """
        dims = dict(params_io.read_meta(path).get("dims") or {})
        template = self.init(jax.random.key(0), {**dims, **(data or {})})
        return params_io.load(path, template, self.fingerprints(), f"model '{self.model.name}'")

