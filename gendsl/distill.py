"""Distillation: turn the evolve nodes of a trained program into K-step samplers.

For each evolve node the teacher's probability-flow ODE is solved from many prior draws (with
the teacher's guidance and, for conditional nodes, parents drawn from the program itself), saved
at the student's K + 1 times; the student, initialised from the teacher, learns each jump by
regression onto these paths (Luhman & Luhman 2021 for K = 1; a DDIM-parameterised jump per
step, as in progressive distillation). The student is a :class:`~gendsl.program.Program` whose
node spec is ``distilled`` (see :mod:`gendsl.mechanisms.evolve.distilled`): sampled by the same
``sample``, saved by the same ``save``, ``describe()`` shows a K-step map of cost K.

A distilled run folder (``distill_run``) has the layout of a ``gendsl fit`` folder: ``model.gen``,
``run.json`` (the teacher's, plus ``distilled_steps`` and ``distilled_nodes``) and ``params/``;
:func:`load_run` rebuilds the program (student or not) and its parameters from any such folder.
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
from pathlib import Path
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np
import optax

from gendsl.errors import GenDataError, GenRuntimeError
from gendsl.ir.model import Model
from gendsl.ir.signatures import Spec
from gendsl.mechanisms.evolve import Evolve
from gendsl.mechanisms.evolve.samplers import ode_path
from gendsl.runtime.params_io import atomic_write_text
from gendsl.runtime.train import build_trainer, run

__all__ = ["student_model", "student_program", "distill", "as_student", "load_run", "distill_run"]

#: teacher paths are computed in chunks of this many draws (bounded memory, one compilation)
_CHUNK = 2048


def student_model(model: Model, steps: int, nodes: list[str] | None = None) -> Model:
    """A copy of ``model`` whose evolve nodes (or only ``nodes``) are ``steps``-step distilled maps."""
    graph = model.graph.copy()
    for name in graph.nodes:
        var = graph.nodes[name]["var"]
        if var.stochastic and var.mechanism == "evolve" and (nodes is None or name in nodes):
            options = {"teacher": var.spec, "steps": int(steps), "given": var.spec["given"]}
            spec = Spec("distilled", "mechanism", options)
            graph.nodes[name]["var"] = dataclasses.replace(var, spec=spec)
    return Model(model.name, graph, model.span, model.statements)


def student_program(program, steps: int, nodes: list[str] | None = None):
    """The :class:`~gendsl.program.Program` of :func:`student_model` (same dimensions)."""
    from gendsl.program import Program

    return Program(student_model(program.model, steps, nodes), program.dims)


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


def _teacher_paths(mech: Evolve, params, key, n: int, context, grid, steps_between: int) -> jax.Array:
    """``(n, K + 1, *shape)`` standardised teacher ODE paths at ``grid`` from ``n`` prior draws."""

    @jax.jit
    def chunk(net, k, ctx):
        y1 = mech.prior_draws(k, _CHUNK)
        path = ode_path(mech.model(net, guided=True), mech.process, y1, ctx, grid, steps_between=steps_between)
        return jnp.moveaxis(path, 0, 1)

    out = []
    for i, k in enumerate(jax.random.split(key, math.ceil(n / _CHUNK))):
        ctx = None
        if context is not None:
            rows = jnp.arange(i * _CHUNK, (i + 1) * _CHUNK) % n
            ctx = context[rows]
        out.append(chunk(params["net"], k, ctx))
    return jnp.concatenate(out)[:n]


def _jump_loss(mech, steps: int):
    """Mean over the K jumps of the squared error onto the teacher's next point."""

    def loss_fn(params, node_state, batch, key, group):
        path, context = batch["path"], batch.get("context")
        total = jnp.zeros(())
        for i in range(steps):
            pred = mech.jump(params, path[:, i], context, i)
            err = (pred - path[:, i + 1]).reshape(pred.shape[0], -1)
            total = total + jnp.mean(jnp.sum(err**2, axis=-1))
        return total / steps, node_state

    return loss_fn


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
    teachers = [n for n in lowered.stochastic if isinstance(n.mechanism, Evolve)]
    if not teachers:
        raise GenRuntimeError(f"model '{program.model.name}' has no evolve node to distil", program.model.span)
    student = student_program(program, steps, [n.name for n in teachers])
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
        init, step = build_trainer(_jump_loss(smech, steps), opt, ("main",), labels)
        state, losses, _ = run(step, init(start, ()), batch, pairs, steps=train_steps, key=k_fit,
                               batch_size=batch_size, progress=progress)
        if losses.size and not np.all(np.isfinite(losses)):
            raise GenRuntimeError(f"distilling '{node.name}' diverged; pass a smaller learning rate (optimizer=)")
        new_params[node.name] = state.params
    return student, new_params


# -- run folders -----------------------------------------------------------------------------------


def _read_run(run_dir: Path) -> dict:
    try:
        return json.loads((run_dir / "run.json").read_text())
    except (OSError, ValueError):
        raise GenDataError(f"{run_dir} is not a gendsl run folder: {run_dir / 'run.json'} is missing or "
                           f"unreadable") from None


def as_student(program, record: dict):
    """The program a run record describes: the student of ``program`` when the record has
    ``distilled_steps`` (and ``distilled_nodes``), else ``program`` itself."""
    if not record.get("distilled_steps"):
        return program
    return student_program(program, int(record["distilled_steps"]), record.get("distilled_nodes"))


def load_run(run_dir: str | Path):
    """The program of a ``gendsl fit`` or ``gendsl distill`` folder and its parameters.

    Reads ``model.gen`` (the model named in ``run.json``), makes it a student when ``run.json``
    has ``distilled_steps`` (:func:`as_student`), and loads ``params/``. Returns ``(program, params)``.
    """
    import gendsl

    run_dir = Path(run_dir)
    record = _read_run(run_dir)
    source = run_dir / "model.gen"
    model = gendsl.parse(source.read_text(), model=record.get("model"), file=str(source))
    program = as_student(gendsl.compile(model, dims=record.get("dims") or {}), record)
    return program, program.load_params(run_dir)


def distill_run(run_dir: str | Path, steps: int, out: str | Path, seed: int = 0, **options) -> Path:
    """``gendsl distill RUN_DIR --steps K --out DIR``: distil a fit run into a new run folder.

    Writes ``DIR/model.gen`` (copied), ``DIR/run.json`` (the teacher's entries plus
    ``distilled_steps``, ``distilled_nodes``, ``distilled_from``, ``distill_seconds``) and
    ``DIR/params/``. Returns ``DIR``.
    """
    import time

    run_dir, out = Path(run_dir), Path(out)
    teacher, params = load_run(run_dir)
    if _read_run(run_dir).get("distilled_steps"):
        raise GenDataError(f"{run_dir} holds a distilled sampler already; distil its teacher run instead")
    t0 = time.perf_counter()
    student, student_params = distill(teacher, params, steps=steps, key=jax.random.key(seed), **options)
    seconds = time.perf_counter() - t0
    out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(run_dir / "model.gen", out / "model.gen")
    nodes = [v.name for v in student.model.variables() if v.stochastic and v.mechanism == "distilled"]
    info = {**_read_run(run_dir), "distilled_steps": int(steps), "distilled_nodes": nodes,
            "distilled_from": str(run_dir), "distill_seconds": seconds, "seed": seed}
    atomic_write_text(out / "run.json", json.dumps(info, indent=2, sort_keys=True))
    student.save(student_params, out / "params")
    return out
