"""gendsl's normalizing flows against flowjax: same architecture, data, batch size and steps.

    python benchmarks/pushforward.py [--sets moons checkerboard] [--steps 2000] [--n 10000]

flowjax is a benchmark peer, not a dependency: ``pip install flowjax`` first. For each data set
and each map (affine ``coupling`` and rational-quadratic ``spline``) both libraries train the same
flow (layers, conditioner widths and depth, activation, spline bins and interval, a standard
normal base) with Adam(1e-3) on the same number of examples, batch size and steps:

- flowjax through its own ``fit_to_data`` (``val_prop=0.1``, no early stopping, its default of
  returning the parameters with the best validation loss); it trains on 90% of the training draws,
- gendsl through ``Program.fit`` on an equally large 90% of them, with as many steps as flowjax's
  epochs hold (``floor(0.9 n / batch)`` per epoch).

Reported: held-out NLL (nats per example, on fresh draws), training wall time (the fit call,
compilation included; flowjax's model construction, done before, is not counted), and sampling
time for 10,000 draws (jitted; the best of three calls after compilation). Prints a markdown table and,
with ``--out``, writes the rows as JSON.
"""

from __future__ import annotations

import argparse
import json
import math
import time

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

import gendsl
from gendsl.data import builtin

MAPS = {
    "coupling": dict(layers=8, hidden=(64, 64)),
    "spline": dict(layers=4, hidden=(64, 64), bins=8, bound=4.0),
}
ACTIVATION = "silu"
LEARNING_RATE = 1e-3
N_SAMPLES = 10_000


def gendsl_text(name: str, cfg: dict) -> str:
    hidden = "[" + ", ".join(map(str, cfg["hidden"])) + "]"
    extra = f", bins={cfg['bins']}, bound={cfg['bound']}" if name == "spline" else ""
    return ("model bench {\n  data x: real[2]\n"
            f"  x ~ pushforward(normal(0, 1), {name}(layers={cfg['layers']}, hidden={hidden}{extra}, "
            f"activation=\"{ACTIVATION}\"))\n}}\n")


def flowjax_flow(name: str, cfg: dict, key):
    from flowjax.bijections import RationalQuadraticSpline
    from flowjax.distributions import Normal
    from flowjax.flows import coupling_flow

    widths = set(cfg["hidden"])
    assert len(widths) == 1, "flowjax conditioners have one width"
    transformer = None  # flowjax's default: affine, softplus scale with a 0.01 floor (as gendsl's)
    if name == "spline":  # flowjax counts inner knots: bins = knots + 1
        transformer = RationalQuadraticSpline(knots=cfg["bins"] - 1, interval=cfg["bound"])
    return coupling_flow(key, base_dist=Normal(jnp.zeros(2)), transformer=transformer, flow_layers=cfg["layers"],
                         nn_width=widths.pop(), nn_depth=len(cfg["hidden"]), nn_activation=jax.nn.silu)


def timed(fn, *args, **kwargs):
    t0 = time.perf_counter()
    out = jax.block_until_ready(fn(*args, **kwargs))
    return out, time.perf_counter() - t0


def run_gendsl(name, cfg, x_fit, heldout, steps, batch):
    prog = gendsl.compile(gendsl.parse(gendsl_text(name, cfg)))
    fit, seconds = timed(prog.fit, {"x": x_fit}, steps=steps, key=jax.random.key(0), batch_size=batch,
                         progress=False)
    nll = -float(jnp.mean(prog.log_prob(fit.params, {"x": heldout})))
    prog.sample(fit.params, jax.random.key(1), N_SAMPLES)  # compile
    sample_seconds = min(timed(lambda k=k: prog.sample(fit.params, jax.random.key(k), N_SAMPLES)["x"])[1]
                         for k in range(2, 5))
    return {"heldout_nll": nll, "train_seconds": seconds, "sample_seconds": sample_seconds,
            "final_loss": float(np.mean(fit.losses[-50:]))}


def run_flowjax(name, cfg, x_train, heldout, epochs, batch):
    from flowjax.train import fit_to_data

    flow = flowjax_flow(name, cfg, jax.random.key(0))
    (flow, losses), seconds = timed(fit_to_data, jax.random.key(1), flow, x_train, learning_rate=LEARNING_RATE,
                                    max_epochs=epochs, max_patience=epochs + 1, batch_size=batch, val_prop=0.1,
                                    show_progress=False)
    nll = -float(jnp.mean(eqx.filter_jit(flow.log_prob)(heldout)))
    sample = eqx.filter_jit(flow.sample)
    sample(jax.random.key(1), (N_SAMPLES,))  # compile
    sample_seconds = min(timed(sample, jax.random.key(k), (N_SAMPLES,))[1] for k in range(2, 5))
    return {"heldout_nll": nll, "train_seconds": seconds, "sample_seconds": sample_seconds,
            "final_loss": float(losses["train"][-1])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", nargs="+", default=["moons", "checkerboard"])
    parser.add_argument("--maps", nargs="+", default=list(MAPS), choices=list(MAPS))
    parser.add_argument("--n", type=int, default=10_000, help="training draws (flowjax validates on 10%% of them)")
    parser.add_argument("--steps", type=int, default=2000, help="about this many optimiser steps (whole epochs)")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--out", default=None, help="write the rows as JSON here")
    args = parser.parse_args()

    n_fit = args.n - round(0.1 * args.n)
    per_epoch = n_fit // args.batch
    epochs = max(1, math.ceil(args.steps / per_epoch))
    steps = epochs * per_epoch
    print(f"{jax.devices()[0].platform}; n={args.n} ({n_fit} fitted), batch {args.batch}, {steps} steps "
          f"({epochs} epochs of {per_epoch})", flush=True)
    rows = []
    for data_name in args.sets:
        x_train = jnp.asarray(builtin(data_name, args.n, seed=0).arrays["x"])
        heldout = jnp.asarray(builtin(data_name, 5000, seed=1).arrays["x"])
        for name in args.maps:
            cfg = MAPS[name]
            ours = run_gendsl(name, cfg, x_train[:n_fit], heldout, steps, args.batch)
            theirs = run_flowjax(name, cfg, x_train, heldout, epochs, args.batch)
            row = {"data": data_name, "map": name, "steps": steps, "gendsl": ours, "flowjax": theirs,
                   "nll_gap": ours["heldout_nll"] - theirs["heldout_nll"],
                   "train_time_ratio": ours["train_seconds"] / theirs["train_seconds"],
                   "sample_time_ratio": ours["sample_seconds"] / theirs["sample_seconds"]}
            rows.append(row)
            print(json.dumps(row), flush=True)

    print("\n| data | map | held-out NLL gendsl | flowjax | gap | train s gendsl | flowjax | ratio "
          "| sample s gendsl | flowjax | ratio |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        g, f = r["gendsl"], r["flowjax"]
        print(f"| {r['data']} | {r['map']} | {g['heldout_nll']:.3f} | {f['heldout_nll']:.3f} | {r['nll_gap']:+.3f} "
              f"| {g['train_seconds']:.1f} | {f['train_seconds']:.1f} | {r['train_time_ratio']:.2f} "
              f"| {g['sample_seconds']:.3f} | {f['sample_seconds']:.3f} | {r['sample_time_ratio']:.2f} |")
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(rows, fh, indent=2)


if __name__ == "__main__":
    main()
