"""Benchmark of the evolve mechanism: sample quality against network evaluations, and likelihood.

Sample quality is the energy distance of model samples to held-out data, as a multiple of the
data's own noise floor (the same distance between the held-out data and a fresh draw of equal
size), for the probability-flow ODE at several step counts, the reverse SDE, and students
distilled to 1 and 2 steps; each number is averaged over a few sampling seeds. The likelihood
check fits a correlated 4-D Gaussian and compares the probability-flow NLL of fresh data with
the true entropy.

    python benchmarks/evolve.py --steps 10000 --out docs/benchmarks_evolve.json

The setting follows ``gendsl fit``: 20 000 examples, 10% held out (2 000), batch 256, Adam(1e-3).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import jax
import numpy as np
from scipy.stats import multivariate_normal

import gendsl
from gendsl.data import builtin
from gendsl.metrics import energy_distance

__all__ = ["quality", "likelihood", "main"]

MODEL = """model bench {{
  data x: real[{d}]
  x ~ evolve({process}, net=mlp(hidden=[{hidden}]), sampler={sampler})
}}"""


def _program(process: str, sampler: str, hidden: str, d: int = 2):
    return gendsl.compile(gendsl.parse(MODEL.format(process=process, sampler=sampler, hidden=hidden, d=d)))


def _ratio(program, params, held, floor, seeds, reference) -> tuple[float, float]:
    """Floor multiple and excess of a sampler.

    Returns the mean over sampling seeds of ED(samples, held) / floor (plug-in estimates, equal
    sizes: what ``gendsl fit`` reports, about 1 for a perfect model), and the unbiased ED of
    ``len(reference)`` samples to ``reference`` (a large fresh draw) in units of the floor: the
    model's own distance to the data law, about 0 for a perfect model, with far less noise.
    """
    out = []
    for s in seeds:
        draws = np.asarray(program.sample(params, jax.random.key(100 + s), len(held))["x"])
        out.append(energy_distance(draws, held, unbiased=False) / floor)
    many = np.asarray(program.sample(params, jax.random.key(99), len(reference))["x"])
    return float(np.mean(out)), float(energy_distance(many, reference) / floor)


def quality(dataset: str, process: str, steps: int, hidden: str, seeds=tuple(range(8)), distill_steps: int = 4000,
            pairs: int = 16384, n: int = 20000) -> dict:
    """Floor multiples against network evaluations for one data set and process."""
    data = builtin(dataset, n, seed=0).arrays["x"]
    rng = np.random.default_rng(0)
    perm = rng.permutation(n)
    train, held = data[perm[n // 10:]], data[perm[: n // 10]]
    floor = float(np.mean([energy_distance(builtin(dataset, len(held), seed=7919 + i).arrays["x"], held,
                                           unbiased=False) for i in range(len(seeds))]))
    reference = builtin(dataset, 8000, seed=4242).arrays["x"]
    prog = _program(process, "ode(steps=32)", hidden)
    t0 = time.perf_counter()
    fit = prog.fit({"x": train}, steps=steps, key=jax.random.key(1), batch_size=256, progress=False)
    rows = {"dataset": dataset, "process": process, "train_steps": steps, "train_seconds": time.perf_counter() - t0,
            "noise_floor": floor, "samplers": []}
    for sampler in ["ode(steps=4)", "ode(steps=8)", "ode(steps=16)", "ode(steps=32)", 'ode(steps="adaptive")',
                    "sde(steps=64)", "sde(steps=256)"]:
        p = _program(process, sampler, hidden)
        ratio, excess = _ratio(p, fit.params, held, floor, seeds, reference)
        jax.effects_barrier()
        _report(rows, dataset, process, sampler, p.lowered().stochastic[0].mechanism.cost(), ratio, excess)
    for k in (1, 2):
        t0 = time.perf_counter()
        student, sp = gendsl.distill(prog, fit.params, steps=k, key=jax.random.key(2), train_steps=distill_steps, pairs=pairs)
        seconds = time.perf_counter() - t0
        ratio, excess = _ratio(student, sp, held, floor, seeds, reference)
        _report(rows, dataset, process, f"distilled {k}-step", k, ratio, excess, distill_seconds=seconds)
    return rows


def _report(rows, dataset, process, sampler, nfe, ratio, excess, **extra) -> None:
    rows["samplers"].append({"sampler": sampler, "nfe": nfe, "ratio": ratio, "excess": excess, **extra})
    print(f"  {dataset:16s} {process:16s} {sampler:22s} nfe {nfe:4d}  x floor {ratio:5.2f}  excess {excess:+6.2f}",
          flush=True)


def likelihood(process: str, steps: int, hidden: str, n: int = 20000, n_test: int = 5000) -> dict:
    """Probability-flow NLL of a learned correlated 4-D Gaussian against its entropy (nats)."""
    rng = np.random.default_rng(4)
    a = rng.standard_normal((4, 4))
    cov = a @ a.T / 4 + 0.1 * np.eye(4)
    mean = np.array([1.0, -2.0, 0.5, 3.0])
    train = rng.multivariate_normal(mean, cov, n)
    test = rng.multivariate_normal(mean, cov, n_test)
    entropy = 0.5 * (4 * math.log(2 * math.pi * math.e) + np.linalg.slogdet(cov)[1])
    prog = _program(process, "ode(steps=32)", hidden, d=4)
    fit = prog.fit({"x": train}, steps=steps, key=jax.random.key(3), batch_size=256, progress=False)
    nll = -np.asarray(prog.log_prob(fit.params, {"x": test}))
    true_nll = -multivariate_normal(mean, cov).logpdf(test)
    correlation = cov / np.sqrt(np.outer(np.diag(cov), np.diag(cov)))
    return {"process": process, "train_steps": steps, "entropy": entropy, "nll": float(nll.mean()),
            "gap": float(nll.mean() - entropy), "se": float(nll.std() / math.sqrt(n_test)),
            "kl": float(np.mean(nll - true_nll)), "kl_se": float(np.std(nll - true_nll) / math.sqrt(n_test)),
            "max_abs_correlation": float(np.max(np.abs(correlation - np.eye(4))))}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10000)
    parser.add_argument("--datasets", default="moons,eight_gaussians,checkerboard")
    parser.add_argument("--processes", default="flow_matching(),vp()")
    parser.add_argument("--hidden", default="128, 128, 128")
    parser.add_argument("--likelihood-steps", type=int, default=4000)
    parser.add_argument("--distill-steps", type=int, default=4000)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    processes = [p if p.endswith(")") else p + ")" for p in args.processes.split("),") if p]
    results = {"quality": [], "likelihood": []}
    for process in processes:
        lik = likelihood(process, args.likelihood_steps, args.hidden)
        results["likelihood"].append(lik)
        print(f"  4-D Gaussian {process:16s} NLL {lik['nll']:.4f}  entropy {lik['entropy']:.4f}  gap "
              f"{lik['gap']:+.4f} +- {lik['se']:.4f}  NLL - true NLL (same points) {lik['kl']:+.4f} +- "
              f"{lik['kl_se']:.4f}", flush=True)
    for dataset in args.datasets.split(","):
        for process in processes:
            results["quality"].append(quality(dataset, process, args.steps, args.hidden,
                                              distill_steps=args.distill_steps))
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
