"""The commands that write run folders: ``gendsl fit`` and ``gendsl sample``.

A run folder holds ``model.gen`` (the source), ``run.json`` (model name, dimensions, seed, data
source), ``params/`` (the parameters), ``metrics.json``, ``loss.png`` and, for 2-D data,
``samples.png``. Every file is written atomically. Folders are reopened by
:func:`gendsl.runfolder.open_run`.
"""

from __future__ import annotations

import hashlib
import io
import json
import time
from pathlib import Path

import jax
import numpy as np
import optax

from gendsl.api import compile, parse
from gendsl.compiler.lower import static_inputs
from gendsl.data import load_source, split_heldout
from gendsl.data.images import dequantise, is_pixels, quantise
from gendsl.errors import GenDataError, GenRuntimeError
from gendsl.fit_metrics import (
    METRIC_ROWS,
    evaluate_fit,
    heldout_nll_stats,
    image_quality,
    image_variables,
    sampler_stats,
    summary_line,
)
from gendsl.lang import read_text
from gendsl.metrics import loss_spikes, real_matrix
from gendsl.numerics.confined import atomic_write_bytes, atomic_write_text, confined_dir, output_root
from gendsl.numerics.confined import read_text as read_bounded
from gendsl.numerics.devices import is_main_process, local_rows
from gendsl.numerics.train import NonFiniteLoss
from gendsl.plots import loss_curve, samples_2d, samples_images
from gendsl.runfolder import open_run
from gendsl.sampling_options import with_sampling

__all__ = ["fit_run", "sample_run", "model_data_variables", "evaluate_fit", "heldout_nll_stats", "summary_line",
           "VALIDATION_SHARE", "PATIENCE", "METRIC_ROWS", "sample_summary"]

#: share of the training part cut off as the validation set of ``gendsl fit``
VALIDATION_SHARE = 0.1
#: evaluations without a better validation loss after which ``gendsl fit`` stops
PATIENCE = 10


def model_data_variables(model) -> list[str]:
    """Names the data must supply: observed variables and inputs that are not dimensions."""
    statics = set(static_inputs(model))
    return [v.name for v in model.by_role("input", "observed") if v.name not in statics]


def _write_json(path: Path, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def _json_default(o):
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(type(o))


def _shape_hint(model, variables: list[str]) -> tuple | None:
    """What a built-in data set should look like for this model's single data variable (with two,
    the second's: a labelled set's point or image)."""
    if len(variables) not in (1, 2):
        return None
    vtype = model[variables[-1]].type
    if vtype.symbols:
        return None
    if vtype.base == "token":
        return (int(vtype.shape[0]) if vtype.shape else 1, int(vtype.vocab))
    return tuple(int(d) for d in vtype.shape)


def fit_run(model_path: str | Path, data_src: str, out: str | Path, *, steps: int, seed: int = 0,
            model_name: str | None = None, batch_size: int = 256, learning_rate: float = 1e-3,
            n_builtin: int = 20000, progress: bool = True, resume: bool = False,
            checkpoint_every: int | None = None, devices: int | str | None = None,
            validation: float | None = VALIDATION_SHARE, eval_every: int | None = None,
            patience: int | None = PATIENCE, force: bool = False) -> dict | None:
    """``gendsl fit``: train, hold out 10%, and write the run folder. Returns the metrics.

    The held-out 10% is only measured, never trained or selected on: the validation set that
    picks the kept parameters and stops training (``validation`` of the rest, evaluated every
    ``eval_every`` steps, ``patience`` evaluations without improvement) is cut from the training
    part. Validation is off for multi-device and multi-host runs. The data are checked before
    anything is written, and a folder holding another run is refused unless ``resume`` (continue
    it: the checkpoint must come from the same model text, data, seed and settings) or ``force``
    (replace it). During training only ``OUT/checkpoint`` is written (every ``checkpoint_every``
    steps, default about 10 per run); the results replace the folder's files once training has
    succeeded, so a failed or refused fit leaves a finished run as it was.
    In a multi-host run each process trains on its own rows of the data and only process 0
    writes the folder (it returns None on the other processes).
    """
    model_path = Path(model_path)
    source = read_text(model_path)  # read once: the trained text is the saved text, byte for byte
    model = parse(source, model=model_name, file=str(model_path))
    variables = model_data_variables(model)
    dataset = load_source(data_src, variables, n_default=n_builtin, seed=seed,
                          shape_hint=_shape_hint(model, variables))
    arrays, pixels = _dequantised(model, dataset.arrays, seed)
    if jax.process_count() > 1:
        arrays = {k: (np.asarray(v[local_rows(len(v))]) if np.ndim(v) else v) for k, v in arrays.items()}
    program = compile(model)
    program.check_data(arrays)  # every data error, on the data as given, before anything is written
    groups = dataset.groups if jax.process_count() == 1 else None
    train, heldout = split_heldout({k: np.asarray(v) for k, v in arrays.items()}, fraction=0.1, seed=seed,
                                   groups=groups)
    main = is_main_process()
    out = output_root(out) if main else Path(out)
    if main:
        _refuse_replacing(out, resume=resume, force=force)
    key = jax.random.key(seed)
    fit_key, eval_key = jax.random.split(key)
    dims = program.lowered(train).dim_values
    if devices is not None or jax.process_count() > 1:
        validation = None
    fingerprint = {"model_text": hashlib.sha256(source.encode("utf-8")).hexdigest(), "model_name": model.name,
                   "seed": seed, "learning_rate": learning_rate, "validation_share": validation,
                   "eval_every": eval_every, "patience": patience}
    checkpoint_dir = confined_dir(out, "checkpoint") if main else None
    log = TrainingLog(checkpoint_dir / TrainingLog.NAME, resume=resume) if main else None
    try:
        result = program.fit(train, steps=steps, key=fit_key, batch_size=batch_size,
                             optimizer=optax.adam(learning_rate), progress=progress and main,
                             checkpoint_dir=checkpoint_dir, log=log,
                             checkpoint_every=checkpoint_every or max(1, steps // 10),
                             resume=resume, devices=devices, validation=validation, eval_every=eval_every,
                             patience=patience if validation is not None else None, fingerprint=fingerprint)
    except NonFiniteLoss as err:
        if main:
            kept = program.save(err.params, confined_dir(out, "checkpoint", "last_good"))
            err.message += f"; the last good parameters are in {kept}"
        raise
    if not main:
        return None
    atomic_write_text(out / TrainingLog.NAME, log.text())
    atomic_write_text(out / "model.gen", source)
    _write_json(out / "run.json", {"model": model.name, "dims": dims, "seed": seed, "steps": steps,
                                   "data": data_src, "pixels": pixels, "batch_size": batch_size, "learning_rate": learning_rate,
                                   "prior_dirs": [str(Path.cwd().resolve()), str(model_path.resolve().parent)]})
    program.save(result.params, confined_dir(out, "params"))
    try:
        metrics = evaluate_fit(program, result.params, heldout, eval_key,
                               fresh=_fresh_draw(data_src, variables, heldout, model, seed, train if groups is not None else None))
    except GenRuntimeError as err:  # a sampler that cannot finish, say: the trained run is kept
        err.message += f" (training finished and the run is saved in {out}, but without held-out metrics)"
        raise
    draws = {k: np.asarray(v) for k, v in metrics.pop("_draws").items()}
    n_drawn = len(next(iter(draws.values())))  # given inputs beside the draws: their first n_drawn rows
    given = {k: v[:n_drawn] if np.ndim(v) else v for k, v in heldout.items() if k not in draws}
    metrics.update(image_quality(model, {**given, **draws}, train, heldout, jax.random.fold_in(eval_key, 1)))
    tail = result.losses[-max(1, min(50, len(result.losses))):] if len(result.losses) else np.zeros(1)
    metrics.update(final_loss=float(np.mean(tail)), steps=steps, steps_taken=int(len(result.losses)),
                   train_seconds=result.train_seconds, n_train=int(len(next(iter(train.values())))),
                   true_nll=dataset.true_nll)
    spikes = loss_spikes(result.losses)
    metrics.update(loss_spikes=int(len(spikes)), loss_spike_steps=[int(s) for s in spikes[:20]])
    curve = result.validation
    if curve is not None:
        metrics.update(validation_share=validation, best_step=int(curve.best_step), stopped_early=bool(curve.stopped_early),
                       validation_loss_best=float(np.nanmin(curve.losses)) if np.isfinite(curve.losses).any() else None)
    if dataset.true_nll is not None and metrics["heldout_nll"] is not None:
        metrics["nll_gap_percent"] = 100.0 * (metrics["heldout_nll"] - dataset.true_nll) / abs(dataset.true_nll)
    _write_json(out / "metrics.json", metrics)
    if len(result.losses):
        loss_curve(result.losses, out / "loss.png", title=f"{model.name}: training and validation loss",
                   validation=(curve.steps, curve.losses) if curve is not None else None,
                   best_step=curve.best_step if curve is not None else None)
    _samples_picture(model, draws, heldout, out / "samples.png")
    return metrics


def _dequantised(model, arrays: dict, seed: int) -> tuple[dict, list[str]]:
    """``arrays`` with the 8-bit images of image-shaped real variables dequantised into (-1, 1)
    (:mod:`gendsl.data.images`), and the names of those variables (``run.json``'s ``pixels``:
    their samples are quantised back)."""
    rng = np.random.default_rng([seed, 255])
    pixels = [v.name for v in model.by_role("observed") if v.type.base == "real" and v.name in arrays
              and is_pixels(arrays[v.name], v.type.shape)]
    return {k: dequantise(v, rng) if k in pixels else v for k, v in arrays.items()}, pixels


def _samples_picture(model, draws: dict, heldout: dict, path: Path) -> None:
    """``samples.png``: 2-D samples beside the held-out points, or, for one image variable, a grid
    of sampled images beside held-out ones, a row per class when the draws hold a label; a replaced
    run's picture is removed when this run has none."""
    real_draws, real_test = real_matrix(model, draws), real_matrix(model, heldout)
    image, label = image_variables(model, draws)
    if real_draws is not None and real_draws.shape[1] == 2:
        samples_2d(real_draws, path, reference=real_test, title=f"{model.name}: samples vs held-out data")
    elif image is not None:
        samples_images(draws[image], path, reference=heldout.get(image),
                       classes=draws[label].reshape(-1) if label is not None else None,
                       title=f"{model.name}: samples vs held-out data")
    elif path.is_file():  # a replaced run's picture, not this one's
        path.unlink()


def _row_step(line: str) -> int | None:
    """The step of a ``training_log.csv`` row, or None for a damaged one."""
    head = line.split(",", 1)[0]
    return int(head) if head.isascii() and head.isdigit() and line.endswith("\n") else None


class TrainingLog:
    """``training_log.csv`` as training goes: ``step,loss,validation_loss,seconds`` every chunk
    (rewritten whole and atomically in ``checkpoint/``, so a resumed run continues its rows), and
    copied beside the results once training has succeeded."""

    NAME = "training_log.csv"
    HEADER = "step,loss,validation_loss,seconds\n"

    def __init__(self, path: Path, resume: bool):
        self.path = path
        self.lines: list[str] = []
        if resume and path.is_file() and not path.is_symlink():
            lines = read_bounded(path, "the training log").splitlines(keepends=True)[1:]
            self.lines = [line for line in lines if _row_step(line) is not None]  # a damaged row is dropped

    def __call__(self, row: dict) -> None:
        step = int(row["step"])
        self.lines = [line for line in self.lines if _row_step(line) < step]  # rows after a resume point
        value = row["validation_loss"]
        self.lines.append(f"{step},{row['loss']:.6g},{'' if value is None else f'{value:.6g}'},{row['seconds']:.2f}\n")
        atomic_write_text(self.path, self.text())

    def text(self) -> str:
        return self.HEADER + "".join(self.lines)


def _refuse_replacing(out: Path, *, resume: bool, force: bool) -> None:
    """Refuse to train into ``out`` when it holds a run (finished, or a checkpoint) and the
    command neither continues it (``resume``) nor replaces it (``force``)."""
    if resume or force:
        return
    if (out / "run.json").exists() or (out / "params").exists():
        try:
            name = json.loads(read_bounded(out / "run.json", "the run record")).get("model")
        except (GenDataError, ValueError, AttributeError, RecursionError):
            name = None
        what = f"a finished run of model '{name}'" if isinstance(name, str) else "a finished run"
        raise GenDataError(f"{out} holds {what}: pass --resume to continue it, --force to replace it (its files "
                           "stay until the new run has succeeded), or choose another --out")
    if (out / "checkpoint").exists():
        raise GenDataError(f"{out} holds the checkpoint of an unfinished run: pass --resume to continue it, --force "
                           "to start afresh, or choose another --out")


def _fresh_draw(data_src: str, variables, heldout: dict, model, seed: int, train: dict | None = None) -> dict | None:
    """An independent draw the size of the held-out set (at most :data:`METRIC_ROWS`), for the noise
    floor (built-in sets only).

    With ``train`` (a set whose held-out examples are whole groups, the digits' images) the draw
    is training rows: the held-out images are none of them, and a model that knows the training
    images exactly scores this floor.
    """
    if not data_src.startswith("builtin:"):
        return None
    n_test = min(len(next(v for v in heldout.values() if np.ndim(v) > 0)), METRIC_ROWS)
    if train is not None:
        rows = np.random.default_rng(seed + 7919).permutation(len(next(iter(train.values()))))[:n_test]
        return {k: (v[rows] if np.ndim(v) else v) for k, v in train.items()}
    return load_source(data_src, variables, n_default=n_test, seed=seed + 7919,
                       shape_hint=_shape_hint(model, variables)).arrays


#: the files and folders of a run folder that ``gendsl sample --out`` must not replace
_RUN_PARTS = ("model.gen", "run.json", "metrics.json", "training_log.csv", "params", "checkpoint")


def _refuse_overwriting_the_run(run_dir: Path, out: Path) -> None:
    """Refuse an ``--out`` that is one of the run's own files (or inside its params/ or checkpoint/)."""
    try:
        inside = out.resolve().relative_to(run_dir.resolve())
    except (ValueError, OSError):
        return
    if inside.parts and inside.parts[0] in _RUN_PARTS:
        raise GenDataError(f"--out {out} is part of the run {run_dir} ({inside.parts[0]}): write the draws elsewhere")


def sample_run(run_dir: str | Path, n: int, out: str | Path, seed: int = 0, devices: int | str | None = None,
               given: dict | None = None, options: dict | None = None) -> dict:
    """``gendsl sample``: draw ``n`` samples from a run; ``.npy`` for one variable, ``.npz`` for all.
    Variables fit on 8-bit images (``run.json``'s ``pixels``) come back as ``uint8`` levels.

    ``given`` clamps variables (name -> value, see :meth:`~gendsl.program.Program.sample`);
    ``options`` are sampling-time choices (``sampler``, ``steps``, ``solver``, ``guidance``: see
    :func:`~gendsl.sampling_options.with_sampling`). Beside the samples, ``OUT.json`` records how
    they were made: the run, ``n``, the seed, the given values, the options, each node's sampler
    and its network evaluations per draw, and the time.

    Returns
    -------
    dict
        That record, with ``"path"``: where the samples were written.
    """
    out = Path(out)
    if out.suffix not in (".npy", ".npz"):
        raise GenDataError(f"--out {out} must end in .npy (one variable) or .npz (every variable)")
    _refuse_overwriting_the_run(Path(run_dir), out)
    run = open_run(run_dir)
    program = with_sampling(run.program, **(options or {}))
    observed = [v.name for v in run.program.model.by_role("observed") if v.name not in (given or {})]
    if out.suffix == ".npy" and len(observed) > 1:
        raise GenDataError(f"the model has several variables ({', '.join(observed)}): write them to a .npz file")
    output_root(out.parent if str(out.parent) else ".", "the folder of --out")  # before the work: a bad folder fails at once
    t0 = time.perf_counter()
    draws, info = program.sample_with_info(run.params, jax.random.key(seed), n, run.record.get("dims") or {},
                                           devices=devices, given=given)
    draws = {k: quantise(v) if k in (run.record.get("pixels") or ()) else np.asarray(v) for k, v in draws.items()}
    seconds = time.perf_counter() - t0
    buf = io.BytesIO()
    if out.suffix == ".npz":
        np.savez(buf, **draws)
    else:
        observed = observed or list(draws)
        if len(observed) != 1:
            raise GenDataError(f"the model has several variables ({', '.join(observed)}): write them to a .npz file")
        np.save(buf, draws[observed[0]], allow_pickle=False)
    nodes = program.lowered(run.record.get("dims") or {}).stochastic
    record = {
        "run": str(run_dir), "n": int(n), "seed": int(seed),
        "given": {k: (np.asarray(v).tolist() if np.size(v) <= 64 else {"shape": list(np.shape(v))})
                  for k, v in (given or {}).items()},
        "sampling_options": dict(options or {}),
        "samplers": {node.name: node.mechanism.sampler_name for node in nodes if node.name not in (given or {})},
        "nfe": {node.name: float(np.mean(np.asarray(info[node.name]["nfe"]))) if "nfe" in info.get(node.name, {})
                else float(node.mechanism.cost()) for node in nodes
                if node.name not in (given or {}) and ("nfe" in info.get(node.name, {}) or node.mechanism.cost())},
        "sampler_stats": sampler_stats({k: v for k, v in info.items() if k not in (given or {})}),
        "seconds": seconds,
    }
    atomic_write_bytes(out, buf.getvalue())
    atomic_write_text(out.with_name(out.name + ".json"), json.dumps(record, indent=2))
    return {**record, "path": str(out)}


def sample_summary(record: dict) -> str:
    """One line on a ``sample_run`` record: what was drawn, by which samplers, at what cost."""
    samplers = "; ".join(f"{k}: {v}" for k, v in record["samplers"].items())
    nfe = ", ".join(f"{k} {v:g}" for k, v in record["nfe"].items())
    swaps = ", ".join(f"{k} {min(v['swap_rates']):.2f}-{max(v['swap_rates']):.2f}"
                      for k, v in record.get("sampler_stats", {}).items() if v.get("swap_rates"))
    return (f"{record['n']} draws in {record['seconds']:.1f} s ({samplers})"
            + (f"; network evaluations per draw: {nfe}" if nfe else "")
            + (f"; swap rates between adjacent temperatures: {swaps}" if swaps else ""))
