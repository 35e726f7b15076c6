"""Quality of sampled images against network evaluations: EDM Heun, DPM-Solver++, the ODE
sampler and a 1-step distilled student, all on one trained class-conditional digits model.

The model is ``x: real[1, 8, 8] ~ evolve(edm(), net=unet(...), given=label)`` trained on 1 500 of
scikit-learn's 8x8 digits (dequantised as ``builtin:digits`` does), the other 297 held out. Each
sampler draws the same number of images per label; they are scored by
:mod:`gendsl.image_metrics` against the held-out images: classifier agreement (the classifier is
trained on half the training images; its held-out accuracy is printed) and the kernel feature
distance as a multiple of real images' own (1 is as good as real images). A 1-step student is
distilled from the ODE sampler and scored the same way.

    python benchmarks/image_samplers.py --steps 1500 --out runs/bench_image_samplers.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import jax
import numpy as np
import optax
from sklearn.datasets import load_digits

import gendsl
from gendsl.distill import distill
from gendsl.image_metrics import image_scorer
from gendsl.sampling_options import with_sampling

__all__ = ["SAMPLERS", "digits", "run", "main"]

MODEL = """model digits {{
  data label: token[1] of 10
  data x: real[1, 8, 8]
  x ~ evolve(edm(), net={net}, sampler=ode(steps=32), given=label)
}}"""

#: the samplers compared: (label, with_sampling changes)
SAMPLERS = [
    ("ode(steps=32)", {"sampler": "ode", "steps": 32}),
    ("ode(steps=8)", {"sampler": "ode", "steps": 8}),
    ("edm_heun(steps=18)", {"sampler": "edm_heun", "steps": 18}),
    ("edm_heun(steps=10)", {"sampler": "edm_heun", "steps": 10}),
    ("edm_heun(steps=5)", {"sampler": "edm_heun", "steps": 5}),
    ("dpm_solver(steps=20)", {"sampler": "dpm_solver", "steps": 20}),
    ("dpm_solver(steps=10)", {"sampler": "dpm_solver", "steps": 10}),
    ("dpm_solver(steps=5)", {"sampler": "dpm_solver", "steps": 5}),
]


def digits(seed: int = 0) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """``((train_x, train_y), (test_x, test_y))``: images ``(n, 1, 8, 8)`` in (-1, 1), labels ``(n, 1)``."""
    data = load_digits()
    rng = np.random.default_rng(seed)
    x = ((data.images[:, None] + rng.uniform(size=data.images[:, None].shape)) / 17.0 * 2.0 - 1.0).astype(np.float32)
    y = data.target.astype(np.int32)[:, None]
    order = rng.permutation(len(x))
    return (x[order[:1500]], y[order[:1500]]), (x[order[1500:]], y[order[1500:]])


def _timed_draws(prog, params, labels, key):
    warm_key, key = jax.random.split(key)
    jax.block_until_ready(prog.sample_with_info(params, warm_key, len(labels), {"label": labels}))  # compile
    t0 = time.perf_counter()
    draws, info = prog.sample_with_info(params, key, len(labels), {"label": labels})
    x = np.asarray(jax.block_until_ready(draws["x"]))
    nfe = int(info.get("x", {}).get("nfe", prog.lowered({"label": labels}).node("x").mechanism.cost()))
    return x, nfe, time.perf_counter() - t0


def run(steps: int, batch: int, draws: int, net: str, distill_steps: int, pairs: int, seed: int = 0) -> dict:
    """Train the model, score every sampler and the distilled student (see the module)."""
    (train_x, train_y), (test_x, test_y) = digits(seed)
    scorer = image_scorer(train_x, test_x, jax.random.key(seed + 7), train_labels=train_y, heldout_labels=test_y,
                          classes=10)
    prog = gendsl.compile(gendsl.parse(MODEL.format(net=net)))
    t0 = time.perf_counter()
    fit = prog.fit({"label": train_y, "x": train_x}, steps=steps, batch_size=batch, key=jax.random.key(seed),
                   optimizer=optax.adam(1e-3), progress=False)
    results = {"net": net, "train_steps": steps, "batch": batch, "train_seconds": round(time.perf_counter() - t0, 1),
               "classifier_heldout_accuracy": scorer.classifier.heldout_accuracy, "samplers": {}}
    labels = np.repeat(np.arange(10, dtype=np.int32), draws)[:, None]
    key = jax.random.key(seed + 2)
    for name, changes in SAMPLERS:
        x, nfe, seconds = _timed_draws(with_sampling(prog, **changes), fit.params, labels, key)
        score = scorer(x, labels)
        results["samplers"][name] = _row(score, nfe, seconds)
        print(name, results["samplers"][name], flush=True)
    t0 = time.perf_counter()
    student, student_params = distill(prog, fit.params, steps=1, key=jax.random.key(seed + 3), train_steps=distill_steps,
                                      pairs=pairs, data={"label": np.resize(train_y, (pairs, 1))})
    distill_seconds = time.perf_counter() - t0
    x, nfe, seconds = _timed_draws(student, student_params, labels, key)
    results["samplers"]["distilled, 1 step"] = {**_row(scorer(x, labels), nfe, seconds),
                                                "distill_seconds": round(distill_seconds, 1)}
    print("distilled", results["samplers"]["distilled, 1 step"], flush=True)
    return results


def _row(score: dict, nfe: int, seconds: float) -> dict:
    return {"nfe": nfe, "classifier_agreement": round(score["classifier_agreement"], 3),
            "feature_distance_over_floor": round(score["feature_distance_over_floor"], 2),
            "memorisation_ratio": round(score["memorisation_ratio"], 3), "sample_seconds": round(seconds, 2)}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1500, help="training steps of the model")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--draws", type=int, default=30, help="samples per label")
    parser.add_argument("--net", default="unet(channels=32, mults=[1, 2])")
    parser.add_argument("--distill-steps", type=int, default=1000)
    parser.add_argument("--pairs", type=int, default=2048)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    results = run(args.steps, args.batch, args.draws, args.net, args.distill_steps, args.pairs)
    text = json.dumps(results, indent=2)
    print(text)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    return results


if __name__ == "__main__":
    main()
