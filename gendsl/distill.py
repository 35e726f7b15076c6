"""Distillation: turn the distillable nodes of a trained program into K-step samplers.

A node is distillable when its mechanism's declaration offers the capability (``evolve``):
the declaration makes the student's right-hand side (``student_spec``), the teacher node solves
its probability-flow ODE from many prior draws, saved at the student's K + 1 times
(``teacher_paths``, with the teacher's guidance and, for conditional nodes, parents drawn from
the program itself), and the student, initialised from the teacher, learns each jump by
regression onto these paths (``distillation_loss``; Luhman & Luhman 2021 for K = 1, a
DDIM-parameterised jump per step as in progressive distillation). The student is a
:class:`~gendsl.program.Program`: sampled by the same ``sample``, saved by the same ``save``;
``describe()`` shows a K-step map of cost K.

A distilled run folder (:func:`distill_run`) has the layout of a ``gendsl fit`` folder:
``model.gen``, ``run.json`` (the teacher's, plus ``distilled_steps`` and ``distilled_nodes``) and
``params/``; :func:`gendsl.runfolder.open_run` reopens it.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np
import optax

from gendsl.errors import GenDataError, GenRuntimeError
from gendsl.numerics.confined import atomic_write_bytes, atomic_write_text, output_root
from gendsl.numerics.train import build_trainer, run
from gendsl.program import Program
from gendsl.registry import MECHANISMS
from gendsl.runfolder import SOURCES, open_run, read_record, student_model

__all__ = ["distill", "distill_run"]

#: teacher paths are computed in chunks of this many draws (bounded memory, one compilation)
_CHUNK = 2048


def _parent_draws(program, lowered, params, key, n: int, data) -> dict:
    """``n`` joint draws of the program, with its inputs broadcast to ``n`` examples."""
    draws = dict(program.sample(params, key, n, data))
    for name, value in (data or {}).items():
        if name in draws or name in lowered.dim_values or name not in program.model:
            continue
        shape = tuple(int(d) for d in lowered.node(name).type.shape)
        value = jnp.asarray(value)
        draws[name] = value if value.shape == (n, *shape) else jnp.broadcast_to(value, (n, *shape))
    return draws


def _teacher_paths(mech, params, key, n: int, context, grid, steps_between: int) -> jax.Array:
    """The teacher's paths for ``n`` draws, computed ``_CHUNK`` at a time by one compiled function."""
    chunk = jax.jit(lambda p, k, ctx: mech.teacher_paths(p, k, _CHUNK, ctx, grid, steps_between))
    out = []
    for i, k in enumerate(jax.random.split(key, math.ceil(n / _CHUNK))):
        ctx = None
        if context is not None:
            rows = jnp.arange(i * _CHUNK, (i + 1) * _CHUNK) % n
            ctx = context[rows]
        out.append(chunk(params, k, ctx))
    return jnp.concatenate(out)[:n]


def _jump_loss(student_node):
    def loss_fn(params, node_state, batch, key, group):
        return student_node.distillation_loss(params, batch["path"], batch.get("context")), node_state

    return loss_fn


def _distillable(node) -> bool:
    return "distillable" in MECHANISMS[node.var.mechanism].capabilities


def distill(program, params: dict, steps: int = 1, key: jax.Array | None = None, *, train_steps: int = 4000,
            pairs: int = 16384, batch_size: int = 512, teacher_steps: int = 32,
            optimizer: optax.GradientTransformation | None = None, data: Mapping[str, Any] | None = None,
            progress: bool = False):
    """Distil every evolve node of ``program`` into a ``steps``-step map.

    Parameters
    ----------
    program, params:
        The trained teacher and its parameters.
    steps:
        K, the student's number of network evaluations per sample (>= 1).
    key:
        PRNG key (prior draws, parents, batches).
    train_steps, batch_size, optimizer:
        Regression of the student (default: Adam with a cosine decay from 1e-3).
    pairs:
        Number of teacher ODE paths to regress onto.
    teacher_steps:
        Heun steps of each teacher path (on the process's own time grid).
    data:
        Inputs the program needs to sample (dimensions, covariates), as for ``sample``.

    Returns
    -------
    (student, student_params):
        A :class:`~gendsl.program.Program` and its parameters (other nodes' parameters are kept).
    """
    if not isinstance(steps, int) or steps < 1:
        raise GenDataError(f"distill needs steps >= 1 (network evaluations of the student), got {steps!r}")
    key = jax.random.key(0) if key is None else key
    lowered = program.lowered(data)
    teachers = [n for n in lowered.stochastic if _distillable(n)]
    if not teachers:
        raise GenRuntimeError(f"model '{program.model.name}' has no evolve node (no distillable node)", program.model.span)
    student = Program(student_model(program.model, steps, [n.name for n in teachers]), program.dims, SOURCES.load)
    student_lowered = student.lowered(data)
    k_parents, k_nodes = jax.random.split(key)
    needs_parents = any(n.mechanism.ctx.given for n in teachers)
    draws = _parent_draws(program, lowered, params, k_parents, pairs, data) if needs_parents else {}
    new_params = dict(params)
    for node, k in zip(teachers, jax.random.split(k_nodes, len(teachers))):
        mech, smech = node.mechanism, student_lowered.node(node.name).mechanism
        k_path, k_fit = jax.random.split(k)
        context = mech.context({p: draws[p] for p in mech.ctx.parents}) if mech.ctx.given else None
        paths = _teacher_paths(mech, params[node.name], k_path, pairs, context, smech.grid,
                               max(1, math.ceil(teacher_steps / steps)))
        batch = {"path": paths} if context is None else {"path": paths, "context": context}
        opt = optimizer or optax.adam(optax.cosine_decay_schedule(1e-3, max(1, train_steps)))
        start = {**params[node.name], "times": jnp.asarray(smech.grid, jnp.float32)}
        labels = jax.tree_util.tree_map(lambda _: "main", start)
        init, step = build_trainer(_jump_loss(smech), opt, ("main",), labels)
        state, losses, _, _ = run(step, init(start, ()), batch, pairs, steps=train_steps, key=k_fit,
                               batch_size=batch_size, progress=progress)
        if losses.size and not np.all(np.isfinite(losses)):
            raise GenRuntimeError(f"distilling '{node.name}' diverged; pass a smaller learning rate (optimizer=)")
        new_params[node.name] = state.params
    return student, new_params


# -- run folders -----------------------------------------------------------------------------------


def distill_run(run_dir: str | Path, steps: int, out: str | Path, seed: int = 0, **options) -> Path:
    """``gendsl distill RUN_DIR --steps K --out DIR``: distil a fit run into a new run folder.

    Writes ``DIR/model.gen`` (the teacher's text, byte for byte), ``DIR/run.json`` (the teacher's
    entries plus ``distilled_steps``, ``distilled_nodes``, ``distilled_from``, ``distill_seconds``)
    and ``DIR/params/``. Returns ``DIR``.
    """
    run_dir, out = Path(run_dir), Path(out)
    teacher = open_run(run_dir)
    if teacher.record.get("distilled_steps"):
        raise GenDataError(f"{run_dir} holds a distilled sampler already; distil its teacher run instead")
    t0 = time.perf_counter()
    student, student_params = distill(teacher.program, teacher.params, steps=steps, key=jax.random.key(seed),
                                      **options)
    seconds = time.perf_counter() - t0
    out = output_root(out)
    atomic_write_bytes(out / "model.gen", (run_dir / "model.gen").read_bytes())
    nodes = [v.name for v in student.model.variables() if v.stochastic and v.mechanism == "distilled"]
    info = {**read_record(run_dir), "distilled_steps": int(steps), "distilled_nodes": nodes,
            "distilled_from": str(run_dir), "distill_seconds": seconds, "seed": seed}
    atomic_write_text(out / "run.json", json.dumps(info, indent=2, sort_keys=True))
    student.save(student_params, out / "params")
    return out
