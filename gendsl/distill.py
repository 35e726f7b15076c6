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
from gendsl.metrics import energy_distance, real_matrix
from gendsl.numerics.confined import atomic_write_bytes, atomic_write_text, confined_dir, output_root
from gendsl.numerics.train import build_trainer, run
from gendsl.plots import samples_2d
from gendsl.program import Program
from gendsl.registry import MECHANISMS
from gendsl.runfolder import SOURCES, open_run, read_record, student_model

__all__ = ["distill", "distill_run", "distill_summary", "REPORT_DRAWS", "MAX_STEPS", "MAX_PAIRS"]

#: teacher paths are computed in chunks of this many draws (bounded memory, one compilation)
_CHUNK = 2048
#: most steps of a distilled student (it is a few-step sampler; its grid costs (steps + 1)^2)
MAX_STEPS = 1024
#: most teacher paths a student regresses onto
MAX_PAIRS = 2**20


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
    if steps > MAX_STEPS or pairs > MAX_PAIRS:
        raise GenDataError(f"distill's steps are at most {MAX_STEPS} (a student is a few-step sampler: its grid holds "
                           f"(steps + 1)^2 numbers) and its pairs at most {MAX_PAIRS}, got steps={steps}, pairs={pairs}")
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


#: draws of student and teacher compared in a distilled run's metrics
REPORT_DRAWS = 2000


def distill_run(run_dir: str | Path, steps: int, out: str | Path, seed: int = 0, progress: bool = True,
                **options) -> dict:
    """``gendsl distill RUN_DIR --steps K --out DIR``: distil a fit run into a new run folder.

    Writes ``DIR/model.gen`` (the teacher's text, byte for byte, after a comment saying which
    nodes are K-step students), ``DIR/run.json`` (the teacher's entries plus
    ``distilled_steps``, ``distilled_nodes``, ``distilled_from``, ``distill_seconds``),
    ``DIR/params/``, ``DIR/metrics.json`` and, for 2-D data, ``DIR/samples.png`` (student over
    teacher). The metrics compare :data:`REPORT_DRAWS` student draws with as many teacher draws:
    their energy distance, over the noise floor (the distance between two independent teacher
    draws), network evaluations and seconds per 1000 samples of each, and the distillation time.
    Returns the metrics.
    """
    run_dir = Path(run_dir)
    out = output_root(out)
    if out.resolve() == run_dir.resolve():
        raise GenDataError(f"--out {out} is the teacher's run folder: write the student to a folder of its own")
    teacher = open_run(run_dir)
    if teacher.record.get("distilled_steps"):
        raise GenDataError(f"{run_dir} holds a distilled sampler already; distil its teacher run instead")
    t0 = time.perf_counter()
    student, student_params = distill(teacher.program, teacher.params, steps=steps, key=jax.random.key(seed),
                                      progress=progress, **options)
    seconds = time.perf_counter() - t0
    nodes = [v.name for v in student.model.variables() if v.stochastic and v.mechanism == "distilled"]
    metrics = _compare(teacher.program, teacher.params, student, student_params, teacher.record.get("dims") or {},
                       jax.random.key(seed + 1), out, student.model.name)
    metrics.update(distill_seconds=seconds, distilled_steps=int(steps), distilled_nodes=nodes)
    note = f"# distilled: {', '.join(nodes)} sampled in {int(steps)} step(s) by the student in params/ (run.json)\n"
    atomic_write_bytes(out / "model.gen", note.encode() + (run_dir / "model.gen").read_bytes())
    info = {**read_record(run_dir), "distilled_steps": int(steps), "distilled_nodes": nodes,
            "distilled_from": str(run_dir), "distill_seconds": seconds, "seed": seed}
    atomic_write_text(out / "run.json", json.dumps(info, indent=2, sort_keys=True))
    student.save(student_params, confined_dir(out, "params"))
    atomic_write_text(out / "metrics.json", json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    return metrics


def _draws_and_cost(program, params, key, n: int, dims) -> tuple[np.ndarray | None, float, int]:
    """Real-valued draws ``(n, D)`` (or None), seconds per 1000 draws, network evaluations per draw."""
    jax.block_until_ready(program.sample(params, key, n, dims))  # compile
    t0 = time.perf_counter()
    draws, info = jax.block_until_ready(program.sample_with_info(params, key, n, dims))
    per_1000 = (time.perf_counter() - t0) * 1000.0 / n
    nfe = int(sum(int(info[node.name]["nfe"]) if "nfe" in info.get(node.name, {}) else node.mechanism.cost()
                  for node in program.lowered(dims).stochastic))
    return real_matrix(program.model, {k: np.asarray(v) for k, v in draws.items()}), per_1000, nfe


def _compare(teacher, teacher_params, student, student_params, dims, key, out: Path, name: str) -> dict:
    """The student against its teacher: energy distance over the noise floor, cost and speed."""
    k_student, k_teacher, k_floor = jax.random.split(key, 3)
    student_x, student_s, student_nfe = _draws_and_cost(student, student_params, k_student, REPORT_DRAWS, dims)
    teacher_x, teacher_s, teacher_nfe = _draws_and_cost(teacher, teacher_params, k_teacher, REPORT_DRAWS, dims)
    metrics = {"nfe_per_sample": student_nfe, "teacher_nfe_per_sample": teacher_nfe,
               "sample_seconds_per_1000": student_s, "teacher_sample_seconds_per_1000": teacher_s,
               "energy_distance_to_teacher": None}
    if student_x is not None and teacher_x is not None:
        floor_x = real_matrix(teacher.model, {k: np.asarray(v) for k, v in
                                              teacher.sample(teacher_params, k_floor, REPORT_DRAWS, dims).items()})
        distance = energy_distance(student_x, teacher_x, unbiased=False)
        floor = energy_distance(floor_x, teacher_x, unbiased=False)
        metrics.update(energy_distance_to_teacher=float(distance), energy_distance_noise_floor=float(floor),
                       energy_distance_over_floor=float(distance / floor) if floor > 0 else None)
        if student_x.shape[1] == 2:
            samples_2d(student_x, out / "samples.png", reference=teacher_x,
                       title=f"{name}: distilled student ({student_nfe} evaluations) over its teacher")
    return metrics


def distill_summary(metrics: dict) -> str:
    """One line a person reads after ``gendsl distill``."""
    parts = [f"{metrics['nfe_per_sample']} network evaluations per sample (teacher {metrics['teacher_nfe_per_sample']})"]
    if metrics.get("energy_distance_to_teacher") is not None:
        over = metrics.get("energy_distance_over_floor")
        parts.append(f"energy distance to the teacher {metrics['energy_distance_to_teacher']:.3g}"
                     + (f" ({over:.2f} x noise floor)" if over is not None else ""))
    parts.append(f"{metrics['sample_seconds_per_1000']:.3g} s per 1000 samples "
                 f"(teacher {metrics['teacher_sample_seconds_per_1000']:.3g})")
    parts.append(f"distilled in {metrics['distill_seconds']:.1f} s")
    return "; ".join(parts)
