"""Benchmark of image networks: a U-Net against an MLP for class-conditional 8x8 digits, at the
same training budget (steps, batch, optimiser).

Each network models ``x: real[1, 8, 8] ~ evolve(flow_matching(), net=..., given=label)``, trained
on the digits' training images (``builtin:digits``, ``part="train"``: whole images kept apart from
the held-out ones). Quality is **classifier agreement**: the share of samples, drawn for labels
0..9 in turn, that a classifier assigns to the label they were drawn for. The classifier is a
multinomial logistic regression (scikit-learn) on the training images' pixels; its accuracy on
the held-out images is reported beside it (agreement cannot mean more than that accuracy). Also
reported: the energy distance of the samples to held-out images, as a multiple of the held-out
images' own distance to fresh training draws (the noise floor), and training seconds.

With ``--data FILE.npz`` (``x``: ``(N, C, H, W)`` uint8, ``label``: ``(N, 1)`` integers, such as
``benchmarks/shapes.py`` writes) the same comparison runs on that set instead: the images are
dequantised as ``gendsl fit`` does, a tenth (at most 1 000) held out, and the samples scored by
:mod:`gendsl.image_metrics` as ``gendsl fit`` scores them (classifier agreement, the kernel
feature distance over its noise floor, memorisation).

    python benchmarks/images.py --steps 300 --out runs/bench_images.json
    python benchmarks/shapes.py --out runs/shapes16.npz
    python benchmarks/images.py --data runs/shapes16.npz --nets "unet(channels=16, mults=[1, 2])",mlp --steps 300
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import jax
import numpy as np
import optax
from sklearn.linear_model import LogisticRegression

import gendsl
from gendsl.data.images import dequantise
from gendsl.data.sets import labelled_digits
from gendsl.image_metrics import image_scorer
from gendsl.metrics import energy_distance

__all__ = ["NETS", "classifier", "run", "run_file", "main"]

MODEL = """model images {{
  data label: token[1] of {classes}
  data x: real[{shape}]
  x ~ evolve(flow_matching(), net={net}, sampler=ode(steps={ode_steps}), given=label)
}}"""

#: the networks compared, about the same number of parameters' order
NETS = {"unet": "unet(channels=32, mults=[1, 2])", "mlp": "mlp(hidden=[256, 256, 256])"}


def _labelled(n: int, seed: int, part: str) -> tuple[np.ndarray, np.ndarray]:
    """``n`` digit images ``(n, 1, 8, 8)`` from one part, with their labels ``(n, 1)``."""
    data = labelled_digits(n, seed, ("label", "x"), (1, 8, 8), part=part)
    return data.arrays["x"], data.arrays["label"]


def classifier(images: np.ndarray, labels: np.ndarray) -> LogisticRegression:
    """A logistic regression of the label on the pixels (``(n, 1, 8, 8)``, ``(n, 1)``)."""
    return LogisticRegression(max_iter=2000).fit(images.reshape(len(images), -1), labels[:, 0])


def run(net: str, steps: int, batch: int, draws: int, ode_steps: int, seed: int = 0) -> dict:
    """Train one network, sample ``draws`` per label and score the samples (see the module)."""
    train_x, train_y = _labelled(8000, seed, "train")
    test_x, test_y = _labelled(1000, seed + 1, "heldout")
    clf = classifier(train_x, train_y)
    prog = gendsl.compile(gendsl.parse(MODEL.format(net=NETS[net], ode_steps=ode_steps, classes=10, shape="1, 8, 8")))
    t0 = time.perf_counter()
    fit = prog.fit({"label": train_y, "x": train_x}, steps=steps, batch_size=batch, key=jax.random.key(seed),
                   optimizer=optax.adam(1e-3), progress=False)
    seconds = time.perf_counter() - t0
    labels = np.repeat(np.arange(10, dtype=np.int32), draws)[:, None]
    x = np.asarray(prog.sample(fit.params, jax.random.key(seed + 2), len(labels), {"label": labels})["x"])
    agreement = float(np.mean(clf.predict(x.reshape(len(x), -1)) == labels[:, 0]))
    flat = lambda a: a.reshape(len(a), -1).astype(np.float64)  # noqa: E731
    floor = float(energy_distance(flat(train_x[: len(test_x)]), flat(test_x), unbiased=False))
    distance = float(energy_distance(flat(x), flat(test_x), unbiased=False))
    return {"net": NETS[net], "steps": steps, "batch": batch, "train_seconds": round(seconds, 1),
            "classifier_heldout_accuracy": float(clf.score(test_x.reshape(len(test_x), -1), test_y[:, 0])),
            "classifier_agreement": agreement, "energy_distance_over_floor": distance / floor}


def run_file(path: Path, net: str, steps: int, batch: int, draws: int, ode_steps: int, seed: int = 0) -> dict:
    """:func:`run` on a labelled uint8 image file (see the module), scored by :mod:`gendsl.image_metrics`."""
    with np.load(path) as data:
        pixels, labels = data["x"], np.asarray(data["label"]).reshape(-1, 1).astype(np.int32)
    rng = np.random.default_rng(seed)
    x, order = dequantise(pixels, rng), rng.permutation(len(pixels))
    held = order[:min(1000, len(order) // 10)]
    kept = order[len(held):]
    classes = int(labels.max()) + 1
    scorer = image_scorer(x[kept], x[held], jax.random.key(seed + 7), train_labels=labels[kept],
                          heldout_labels=labels[held], classes=classes)
    spec = NETS.get(net, net)
    shape = ", ".join(str(d) for d in x.shape[1:])
    prog = gendsl.compile(gendsl.parse(MODEL.format(net=spec, ode_steps=ode_steps, classes=classes, shape=shape)))
    t0 = time.perf_counter()
    fit = prog.fit({"label": labels[kept], "x": x[kept]}, steps=steps, batch_size=batch, key=jax.random.key(seed),
                   optimizer=optax.adam(1e-3), progress=False)
    seconds = time.perf_counter() - t0
    drawn = np.repeat(np.arange(classes, dtype=np.int32), draws)[:, None]
    samples = np.asarray(prog.sample(fit.params, jax.random.key(seed + 2), len(drawn), {"label": drawn})["x"])
    score = scorer(samples, drawn)
    keys = ("classifier_heldout_accuracy", "classifier_agreement", "feature_distance_over_floor", "memorisation_ratio")
    return {"net": spec, "data": str(path), "steps": steps, "batch": batch, "train_seconds": round(seconds, 1),
            **{k: score[k] for k in keys}}


def _split(text: str) -> list[str]:
    """``text`` split at the commas outside brackets: "unet(channels=16, mults=[1, 2]),mlp" -> 2 nets."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text + ","):
        depth += 1 if ch in "([" else -1 if ch in ")]" else 0
        if ch == "," and depth == 0:
            parts.append(text[start:i].strip())
            start = i + 1
    return [p for p in parts if p]


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--draws", type=int, default=50, help="samples per label")
    parser.add_argument("--ode-steps", type=int, default=16)
    parser.add_argument("--nets", default="unet,mlp", help="comma-separated: unet, mlp or a net=... spec")
    parser.add_argument("--data", type=Path, default=None, help="a labelled uint8 image .npz instead of the digits")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    nets = _split(args.nets)
    if args.data is not None:
        results = {net: run_file(args.data, net, args.steps, args.batch, args.draws, args.ode_steps) for net in nets}
    else:
        results = {net: run(net, args.steps, args.batch, args.draws, args.ode_steps) for net in nets}
    text = json.dumps(results, indent=2)
    print(text)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    return results


if __name__ == "__main__":
    main()
