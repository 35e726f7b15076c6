"""gendsl's bijective flows against flowjax on small standardized tabular and 2-D data, with
validation-based early stopping on both sides.

    python benchmarks/pushforward_tabular.py [--sets wine cancer circles scurve ring]
        [--maps coupling spline] [--seeds 0 1 2] [--patience 5] [--max-epochs 300]

flowjax is a benchmark peer, not a dependency (``pip install flowjax scikit-learn``).

Data: scikit-learn's bundled wine (13-D, 160 training rows, 18 held out) and breast cancer (30-D,
400 / 169), and three 2-D sets (2000 / 2000): ``make_circles``, ``make_s_curve`` projected on its
(x, z) plane, and a ring of 8 Gaussians. Every set is standardized with its training rows' mean
and standard deviation.

Training: the same flow on both sides (``coupling(layers=6, hidden=[64, 64])`` or
``spline(layers=4, bins=8, hidden=[64, 64], bound=4.0)``, SiLU, standard normal base), Adam with
flowjax's ``fit_to_data`` defaults (learning rate 5e-4, batch 100, 10% validation split,
``max_patience`` epochs without a validation improvement, the best-validation parameters returned).
The validation split is flowjax's own (``train_val_split`` with the key ``fit_to_data`` uses), so
both sides fit and validate on the same rows.

gendsl trains with ``Program.fit(..., validation={"x": val}, eval_every=<one epoch>, patience=)``:
the validation NLL after every epoch, the best parameters kept, the same patience rule.

Reported per run (sides alternate which one goes first): held-out NLL in nats per example (mean,
standard error, median, worst point, count of non-finite points), the NLL off the data (median and
worst over 500 held-out rows with one coordinate moved 1-2 standard deviations beyond the training
range), the epoch of the best validation
loss, and training wall time (compilation included). Then, per data set and map, the mean gap
over seeds.
"""

from __future__ import annotations

import argparse
import json
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flowjax.bijections import RationalQuadraticSpline
from flowjax.distributions import Normal
from flowjax.flows import coupling_flow
from flowjax.train import fit_to_data
from flowjax.train.train_utils import train_val_split
from sklearn import datasets
from sklearn.model_selection import train_test_split

import gendsl

MAPS = {
    "coupling": ("coupling(layers=6, hidden=[64, 64], activation=\"silu\")", dict(layers=6)),
    "spline": ("spline(layers=4, bins=8, hidden=[64, 64], bound=4.0, activation=\"silu\")",
               dict(layers=4, knots=7, interval=4.0)),
}
WIDTH, DEPTH = 64, 2
LEARNING_RATE, BATCH, VAL_PROP = 5e-4, 100, 0.1


def load(name: str) -> tuple[np.ndarray, np.ndarray]:
    """Standardized ``(train, held_out)`` float32 arrays of a data set."""

    rng = np.random.default_rng(0)
    if name == "wine":
        train, test = train_test_split(datasets.load_wine().data, train_size=160, random_state=0)
    elif name == "cancer":
        train, test = train_test_split(datasets.load_breast_cancer().data, train_size=400, random_state=0)
    else:
        if name == "circles":
            x = datasets.make_circles(4000, noise=0.05, factor=0.5, random_state=0)[0]
        elif name == "scurve":
            x = datasets.make_s_curve(4000, noise=0.05, random_state=0)[0][:, [0, 2]]
        elif name == "ring":
            angle = 2 * np.pi * rng.integers(0, 8, 4000) / 8
            x = 3.0 * np.c_[np.cos(angle), np.sin(angle)] + 0.2 * rng.normal(size=(4000, 2))
        else:
            raise ValueError(name)
        train, test = x[:2000], x[2000:]
    mu, sd = train.mean(0), train.std(0)
    return ((train - mu) / sd).astype(np.float32), ((test - mu) / sd).astype(np.float32)


def outside(x: np.ndarray, held_out: np.ndarray, n: int = 500) -> np.ndarray:
    """``n`` held-out rows, each with one coordinate moved 1-2 standard deviations beyond the
    training range (below its minimum or above its maximum): points somewhat off the data."""
    rng = np.random.default_rng(1)
    sd, lo, hi = x.std(0), x.min(0), x.max(0)
    points = held_out[rng.integers(0, len(held_out), n)].copy()
    d = rng.integers(0, x.shape[1], n)
    off = rng.uniform(1.0, 2.0, n) * sd[d]
    points[np.arange(n), d] = np.where(rng.random(n) < 0.5, hi[d] + off, lo[d] - off)
    return points.astype(np.float32)


def summary(nll: np.ndarray, off_nll: np.ndarray) -> dict:
    finite = np.isfinite(nll)
    return {"mean": float(np.mean(nll)), "se": float(np.std(nll) / np.sqrt(len(nll))),
            "median": float(np.median(nll)), "worst": float(np.max(nll)), "nonfinite": int((~finite).sum()),
            "off_median": float(np.median(off_nll)), "off_worst": float(np.max(off_nll))}


def split(x: np.ndarray, key: jax.Array):
    """flowjax's own train / validation split for ``fit_to_data(key, ...)``."""
    _, subkey = jax.random.split(key)
    (fit,), (val,) = train_val_split(subkey, (jnp.asarray(x),), val_prop=VAL_PROP)
    return fit, val


def run_flowjax(map_name: str, x: np.ndarray, held_out: np.ndarray, seed: int, patience: int, max_epochs: int):
    cfg = MAPS[map_name][1]
    transformer = (RationalQuadraticSpline(knots=cfg["knots"], interval=cfg["interval"])
                   if map_name == "spline" else None)  # None: affine, softplus scale, 0.01 floor
    flow = coupling_flow(jax.random.key(1000 + seed), base_dist=Normal(jnp.zeros(x.shape[1])),
                         transformer=transformer, flow_layers=cfg["layers"], nn_width=WIDTH, nn_depth=DEPTH,
                         nn_activation=jax.nn.silu)
    t0 = time.perf_counter()
    flow, losses = fit_to_data(jax.random.key(seed), flow, jnp.asarray(x), learning_rate=LEARNING_RATE,
                               batch_size=BATCH, val_prop=VAL_PROP, max_patience=patience, max_epochs=max_epochs,
                               show_progress=False)
    seconds = time.perf_counter() - t0
    nll = -np.asarray(flow.log_prob(jnp.asarray(held_out)))
    off_nll = -np.asarray(flow.log_prob(jnp.asarray(outside(x, held_out))))
    return {**summary(nll, off_nll), "best_epoch": int(np.argmin(losses["val"])), "epochs": len(losses["val"]),
            "train_s": seconds}


def run_gendsl(map_name: str, x: np.ndarray, held_out: np.ndarray, seed: int, patience: int, max_epochs: int):
    """``Program.fit`` with the same validation rows, an evaluation every epoch and flowjax's patience."""
    text = (f"model bench {{\n  data x: real[{x.shape[1]}]\n"
            f"  x ~ pushforward(normal(0, 1), {MAPS[map_name][0]})\n}}\n")
    prog = gendsl.compile(gendsl.parse(text))
    fit_rows, val = split(x, jax.random.key(seed))
    per_epoch = max(1, fit_rows.shape[0] // min(BATCH, fit_rows.shape[0]))
    t0 = time.perf_counter()
    fit = prog.fit({"x": np.asarray(fit_rows)}, steps=max_epochs * per_epoch, key=jax.random.key(1000 + seed),
                   batch_size=BATCH, optimizer=optax.adam(LEARNING_RATE), progress=False,
                   validation={"x": np.asarray(val)}, eval_every=per_epoch,
                   patience=patience + 1)  # flowjax stops once more than max_patience epochs passed
    jax.block_until_ready(fit.params)
    seconds = time.perf_counter() - t0
    nll = -np.asarray(prog.log_prob(fit.params, {"x": held_out}))
    off_nll = -np.asarray(prog.log_prob(fit.params, {"x": outside(x, held_out)}))
    curve = fit.validation
    return {**summary(nll, off_nll), "best_epoch": int(curve.best_step // per_epoch) - 1, "epochs": len(curve.losses),
            "train_s": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", nargs="+", default=["wine", "cancer", "circles", "scurve", "ring"])
    parser.add_argument("--maps", nargs="+", default=["coupling"], choices=list(MAPS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--patience", type=int, default=5, help="flowjax's max_patience (epochs)")
    parser.add_argument("--max-epochs", type=int, default=300)
    parser.add_argument("--out", default=None, help="write the rows as JSON here")
    args = parser.parse_args()
    sides = {"gendsl": run_gendsl, "flowjax": run_flowjax}
    rows, turn = [], 0
    print(f"{'data':8s} {'map':8s} seed side     {'mean':>9s} {'se':>7s} {'median':>7s} {'worst':>9s} "
          f"nonfin best/ep  train_s  off-median  off-worst", flush=True)
    for data_name in args.sets:
        x, held_out = load(data_name)
        for map_name in args.maps:
            for seed in args.seeds:
                order = ["gendsl", "flowjax"] if turn % 2 == 0 else ["flowjax", "gendsl"]
                turn += 1
                row = {"data": data_name, "map": map_name, "seed": seed, "dim": x.shape[1]}
                for side in order:
                    r = sides[side](map_name, x, held_out, seed, args.patience, args.max_epochs)
                    row[side] = r
                    print(f"{data_name:8s} {map_name:8s} {seed:4d} {side:8s} {r['mean']:9.3f} {r['se']:7.3f} "
                          f"{r['median']:7.3f} {r['worst']:9.3f} {r['nonfinite']:6d} "
                          f"{r['best_epoch']:4d}/{r['epochs']:<4d} {r['train_s']:7.1f} {r['off_median']:10.3g} "
                          f"{r['off_worst']:10.3g}", flush=True)
                rows.append(row)
    print("\n| data | map | held-out NLL gendsl | flowjax | gap (se over seeds) | worst gendsl | worst flowjax "
          "| train s gendsl | flowjax | off-data worst gendsl | flowjax |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for data_name in args.sets:
        for map_name in args.maps:
            rs = [r for r in rows if r["data"] == data_name and r["map"] == map_name]
            g = np.array([r["gendsl"]["mean"] for r in rs])
            f = np.array([r["flowjax"]["mean"] for r in rs])
            gap = g - f
            se = gap.std(ddof=1) / np.sqrt(len(gap)) if len(gap) > 1 else float("nan")
            print(f"| {data_name} ({rs[0]['dim']}-D) | {map_name} | {g.mean():.3f} | {f.mean():.3f} "
                  f"| {gap.mean():+.3f} ({se:.3f}) | {max(r['gendsl']['worst'] for r in rs):.1f} "
                  f"| {max(r['flowjax']['worst'] for r in rs):.1f} "
                  f"| {np.mean([r['gendsl']['train_s'] for r in rs]):.1f} "
                  f"| {np.mean([r['flowjax']['train_s'] for r in rs]):.1f} "
                  f"| {max(r['gendsl']['off_worst'] for r in rs):.3g} "
                  f"| {max(r['flowjax']['off_worst'] for r in rs):.3g} |")
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(rows, fh, indent=1)


if __name__ == "__main__":
    main()
