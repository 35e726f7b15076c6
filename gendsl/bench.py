"""``gendsl bench``: one model per mechanism, trained on the same data with the same budget.

    gendsl bench --quick --out runs/bench        # about 7 minutes on 2 CPU cores
    gendsl bench --out runs/bench                # the full run

Per data set (the built-in 2-D sets and the 8x8 digits, 64 dimensions, dequantised), a table of
held-out NLL and its kind, energy distance to held-out data as a multiple of the noise floor
(the distance between the held-out data and an independent draw of the same size), sampling time
per 1000 samples, network evaluations per sample, and training time; a summary table with one
row per mechanism and the data sets side by side; and pictures of samples per mechanism and data
set (``samples.png`` for the 2-D sets, ``digits.png`` for the digits).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import jax
import numpy as np

from gendsl import api
from gendsl.data import builtin
from gendsl.distill import distill
from gendsl.fit_metrics import evaluate_fit
from gendsl.numerics.confined import atomic_write_text, output_root
from gendsl.plots import grid_2d

__all__ = ["MECHANISMS", "DISTILLED", "DATASETS", "Budget", "QUICK", "FULL", "run_bench"]

#: label -> right-hand side (H: hidden width); "distilled" rows distil the row they name
MECHANISMS = {
    "factorize (made)": "factorize(made(hidden=[H, H], components=8))",
    "pushforward (spline)": "pushforward(normal(0, 1), spline(layers=4, bins=8, hidden=[H, H]))",
    "evolve (vp, ode 32)": "evolve(vp(), net=mlp(hidden=[H, H, H]), sampler=ode(steps=32))",
    "evolve (flow matching, ode 32)": "evolve(flow_matching(), net=mlp(hidden=[H, H, H]), sampler=ode(steps=32))",
    "energy (mlp, mala)": "energy(mlp(hidden=[H, H]), train=dsm(sigma=0.1, levels=1), sampler=mala(step_size=0.01, steps=200))",
}
#: label of a distilled row -> label of its teacher in :data:`MECHANISMS`
DISTILLED = {"evolve (flow matching, distilled 1 step)": "evolve (flow matching, ode 32)"}
DATASETS = ("moons", "eight_gaussians", "checkerboard", "digits")


@dataclass(frozen=True)
class Budget:
    """What every mechanism gets on every data set.

    Attributes
    ----------
    n_train, n_test:
        Training examples, and held-out examples (also the number of samples drawn).
    steps, batch_size, hidden:
        Optimiser steps (Adam 1e-3), batch size and hidden width of every network.
    distill_steps, distill_pairs:
        Regression steps and teacher ODE paths of the distilled rows.
    digits_n_train, digits_n_test:
        The same sizes for the 64-dimensional digits (0: as for the 2-D sets).
    """

    n_train: int
    n_test: int
    steps: int
    hidden: int
    batch_size: int = 256
    distill_steps: int = 4000
    distill_pairs: int = 16384
    digits_n_train: int = 0
    digits_n_test: int = 0

    def sizes(self, dataset: str) -> tuple[int, int]:
        """``(n_train, n_test)`` for one data set."""
        if dataset == "digits":
            return self.digits_n_train or self.n_train, self.digits_n_test or self.n_test
        return self.n_train, self.n_test


QUICK = Budget(n_train=4000, n_test=1000, steps=400, hidden=64, distill_steps=400, distill_pairs=4096,
               digits_n_train=4000, digits_n_test=500)
FULL = Budget(n_train=20000, n_test=2000, steps=3000, hidden=128, distill_steps=2000)


def _fmt(value, digits=3):
    if value is None:
        return "n/a"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _row(label, metrics, train_seconds) -> dict:
    return {"mechanism": label, "heldout_nll": metrics["heldout_nll"], "kind": metrics["log_prob_kind"],
            "ed_over_floor": metrics.get("energy_distance_over_floor"), "sample_s_per_1000": metrics["sample_seconds_per_1000"],
            "nfe": metrics["nfe_per_sample"], "train_seconds": train_seconds}


def _table(rows: list[dict]) -> str:
    out = ["| mechanism | held-out NLL (nats) | kind | energy distance / noise floor | s per 1000 samples | NFE per sample | train s |",
           "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        out.append(f"| {r['mechanism']} | {_fmt(r['heldout_nll'])} | {r['kind']} | {_fmt(r['ed_over_floor'], 2)} | "
                   f"{_fmt(r['sample_s_per_1000'], 4)} | {r['nfe']} | {_fmt(r['train_seconds'], 1)} |")
    return "\n".join(out)


def summary_table(results: dict[str, list[dict]]) -> str:
    """One row per mechanism, the data sets side by side: held-out NLL and energy distance / floor."""
    datasets = list(results)
    labels = list(dict.fromkeys(r["mechanism"] for rows in results.values() for r in rows))
    cells = {(r["mechanism"], ds): r for ds, rows in results.items() for r in rows}
    head = "| mechanism | kind | NFE per sample | " + " | ".join(f"{ds}: NLL | {ds}: ED / floor" for ds in datasets) + " |"
    out = [head, "| --- " * (3 + 2 * len(datasets)) + "|"]
    for label in labels:
        first = next(cells[(label, ds)] for ds in datasets if (label, ds) in cells)
        parts = []
        for ds in datasets:
            r = cells.get((label, ds))
            parts += ["n/a", "n/a"] if r is None else [_fmt(r["heldout_nll"], 2), _fmt(r["ed_over_floor"], 2)]
        out.append(f"| {label} | {first['kind']} | {first['nfe']} | " + " | ".join(parts) + " |")
    return "\n".join(out)


def _program(rhs: str, dim: int, hidden: int):

    text = f"model bench {{\n  data x: real[{dim}]\n  x ~ {rhs.replace('H', str(hidden))}\n}}\n"
    return api.compile(api.parse(text))


def run_bench(out: str | Path, quick: bool = False, seed: int = 0, datasets=None, log=print,
              budget: Budget | None = None) -> Path:
    """Run every mechanism on every data set; write ``benchmark.md``, ``results.json`` and pictures.

    ``datasets`` defaults to :data:`DATASETS`, ``budget`` to :data:`QUICK` or :data:`FULL`.
    Returns the path of ``benchmark.md``.
    """

    budget = budget or (QUICK if quick else FULL)
    datasets = DATASETS if datasets is None else tuple(datasets)
    out = output_root(out)
    results, panels, digit_panels, seconds = {}, {}, {}, {}
    t_start = time.perf_counter()
    for ds in datasets:
        t_ds = time.perf_counter()
        dim = 64 if ds == "digits" else 2
        n_train, n_test = budget.sizes(ds)
        # digits: the held-out images are none of the training images; the noise floor's fresh draw
        # comes from the training images (what a model that knows them exactly would score)
        train_part, test_part = ("train", "heldout") if ds == "digits" else (None, None)
        train = builtin(ds, n_train, seed=seed, part=train_part).arrays["x"]
        test = builtin(ds, n_test, seed=seed + 1, part=test_part).arrays["x"]
        fresh = builtin(ds, n_test, seed=seed + 2, part=train_part).arrays["x"]
        pictures = digit_panels if ds == "digits" else panels
        rows, fitted = [], {}
        for label, rhs in MECHANISMS.items():
            prog = _program(rhs, dim, budget.hidden)
            log(f"[{ds}] {label}: training {budget.steps} steps")
            fit = prog.fit({"x": train}, steps=budget.steps, key=jax.random.key(seed), batch_size=budget.batch_size,
                           progress=False)
            metrics = evaluate_fit(prog, fit.params, {"x": test}, jax.random.key(seed + 3), fresh={"x": fresh})
            fitted[label] = (prog, fit.params)
            rows.append(_row(label, metrics, fit.train_seconds))
            pictures[(label, ds)] = np.asarray(metrics["_draws"]["x"])
        for label, teacher in DISTILLED.items():
            if teacher not in fitted:
                continue
            prog, params = fitted[teacher]
            log(f"[{ds}] {label}: distilling ({budget.distill_steps} steps)")
            t0 = time.perf_counter()
            student, student_params = distill(prog, params, steps=1, key=jax.random.key(seed + 4),
                                                   train_steps=budget.distill_steps, pairs=budget.distill_pairs)
            distill_seconds = time.perf_counter() - t0
            metrics = evaluate_fit(student, student_params, {"x": test}, jax.random.key(seed + 5), fresh={"x": fresh})
            rows.append(_row(label, metrics, distill_seconds))
            pictures[(label, ds)] = np.asarray(metrics["_draws"]["x"])
        results[ds] = rows
        seconds[ds] = time.perf_counter() - t_ds
        log(_table(rows))
        log(f"[{ds}] {seconds[ds]:.0f} s")
    total = time.perf_counter() - t_start
    sizes = ", ".join(f"{ds} {budget.sizes(ds)[0]} / {budget.sizes(ds)[1]}" for ds in datasets)
    lines = [f"# gendsl bench ({'quick' if quick else 'full'})", "",
             f"Budget: {budget.steps} steps of batch {budget.batch_size} (Adam 1e-3), hidden width {budget.hidden}; "
             f"training / held-out examples: {sizes}; the distilled student: {budget.distill_steps} regression "
             f"steps on {budget.distill_pairs} teacher paths. Total time {total / 60:.1f} min "
             f"({', '.join(f'{ds} {s:.0f} s' for ds, s in seconds.items())}).",
             "NLL is in nats per example (digits: in the dequantised space scaled to (-1, 1)); 'estimate' is an ODE "
             "estimate, 'unnormalized'/'unavailable' have no NLL. The noise floor is the energy distance between the "
             "held-out data and an independent draw of the same size, so a perfect sampler scores about 1.", "",
             "## All data sets", "", summary_table(results), ""]
    for ds, rows in results.items():
        lines += [f"## {ds}", "", _table(rows), ""]
    if panels:
        grid_2d(panels, out / "samples.png", title="samples per mechanism (rows) and data set (columns)")
        lines.append("![samples](samples.png)")
    if digit_panels:
        _digits_picture(digit_panels, out / "digits.png")
        lines.append("![digits](digits.png)")
    atomic_write_text(out / "benchmark.md", "\n".join(lines) + "\n")
    atomic_write_text(out / "results.json", json.dumps({"budget": asdict(budget), "seconds": total,
                                                        "seconds_per_dataset": seconds, "results": results},
                                                       indent=2, default=float))
    return out / "benchmark.md"


def _digits_picture(panels: dict, path: Path) -> None:
    """Eight samples per mechanism, as 8x8 images (one row per mechanism)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    labels = [label for label, _ in panels]
    fig = Figure(figsize=(8, 1.1 * len(labels) + 0.4))
    FigureCanvasAgg(fig)
    for i, label in enumerate(labels):
        imgs = panels[(label, "digits")][:8]
        for j, img in enumerate(imgs):
            ax = fig.add_subplot(len(labels), 8, i * 8 + j + 1)
            ax.imshow(np.clip(img.reshape(8, 8), -1, 1), cmap="gray_r", vmin=-1, vmax=1)
            ax.set_xticks([]), ax.set_yticks([])
            if j == 0:
                ax.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
