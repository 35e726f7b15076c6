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

    python benchmarks/images.py --steps 300 --out runs/bench_images.json
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
from gendsl.data.sets import labelled_digits
from gendsl.metrics import energy_distance

__all__ = ["NETS", "classifier", "run", "main"]

MODEL = """model digits {{
  data label: token[1] of 10
  data x: real[1, 8, 8]
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
    prog = gendsl.compile(gendsl.parse(MODEL.format(net=NETS[net], ode_steps=ode_steps)))
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


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--draws", type=int, default=50, help="samples per label")
    parser.add_argument("--ode-steps", type=int, default=16)
    parser.add_argument("--nets", default="unet,mlp")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    results = {net: run(net, args.steps, args.batch, args.draws, args.ode_steps) for net in args.nets.split(",")}
    text = json.dumps(results, indent=2)
    print(text)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    return results


if __name__ == "__main__":
    main()
