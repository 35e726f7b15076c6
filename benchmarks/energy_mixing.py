"""Benchmark of energies that mix: mode weights against evaluations, and the bench's energy row.

Part 1: mixtures 0.2 N(m0, I) + 0.3 N(m1, I) + 0.5 N(m2, I) with m0 = (-6, 0, ...), m1 = (6, 0, ...),
m2 = (0, 6, 0, ...) in 2 and 10 dimensions, written as expression energies: for each sampler, the
largest error of the three mode shares of n draws (each draw given to its nearest mean), and the
target evaluations the whole sample cost (gradient evaluations for MALA, tempering and annealed;
density evaluations for SMC's random-walk moves). Annealed Langevin runs on the mixture's closed-form
noise-conditional density (the mixture smoothed by N(0, sigma^2 I)), as a multi-level DSM energy
would provide it.

Part 2: the bench's energy row (an ``mlp`` energy trained by DSM on moons, checkerboard,
scikit-learn's circles and the moons in other units, two seeds): energy distance to held-out data
over the noise floor for a single-level dsm energy sampled by MALA from noise (the bench's row),
by its default (tempered SMC from a Gaussian fitted to the data) and by parallel tempering, and
for the default energy (dsm at 8 noise levels) sampled by its default (annealed Langevin over
its levels) and by MALA.

    python benchmarks/energy_mixing.py --draws 1000 --steps 2000 --out docs/benchmarks_energy_mixing.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import gendsl
from gendsl.data import builtin
from gendsl.metrics import energy_distance
from gendsl.numerics import annealed

__all__ = ["mode_weights", "energy_row", "main"]

WEIGHTS = np.array([0.2, 0.3, 0.5])
SHIFT = 6.0


def _means(dim: int) -> np.ndarray:
    m = np.zeros((3, dim))
    m[0, 0], m[1, 0], m[2, 1] = -SHIFT, SHIFT, SHIFT
    return m


def _energy(dim: int) -> str:
    terms = [f"log({WEIGHTS[0]}) - (sum(x^2) + {2 * SHIFT} * x[0] + {SHIFT ** 2}) / 2",
             f"log({WEIGHTS[1]}) - (sum(x^2) - {2 * SHIFT} * x[0] + {SHIFT ** 2}) / 2",
             f"log({WEIGHTS[2]}) - (sum(x^2) - {2 * SHIFT} * x[1] + {SHIFT ** 2}) / 2"]
    return f"-logsumexp([{', '.join(terms)}])"


def _error(x: np.ndarray, dim: int) -> float:
    modes = np.argmin(((x[:, None, :] - _means(dim)) ** 2).sum(-1), -1)
    return float(np.abs(np.bincount(modes, minlength=3) / len(x) - WEIGHTS).max())


def _samplers(n: int) -> dict[str, tuple[str, callable]]:
    """label -> (sampler text, evaluations of the whole sample given the run's info)."""
    return {
        "mala, a chain per draw": ("mala(warmup=100, steps=400)", lambda info: n * 500),
        "mala, 1 long chain": ("mala(warmup=200, steps=2000, chains=1)", lambda info: 200 + max(2000, n)),
        "smc(particles=1000)": ("smc(particles=1000, mcmc_steps=10)",
                                lambda info: 1000 * int(info["tempering_steps"]) * 13),
        "tempering(8 ladders x 8, 500 rounds)": ("tempering(chains=8, temperatures=8, steps=500, warmup=100)",
                                                 lambda info: 8 * 8 * 600),
        "tempering(16 ladders x 8, 1500 rounds)": ("tempering(chains=16, temperatures=8, steps=1500, warmup=200)",
                                                   lambda info: 16 * 8 * 1700),
    }


def _smoothed(dim: int):
    m = jnp.asarray(_means(dim))

    def logpdf(u, sigma):
        var = 1.0 + sigma ** 2
        return jax.scipy.special.logsumexp(jnp.log(WEIGHTS) - 0.5 * jnp.sum((u - m) ** 2, -1) / var
                                           - 0.5 * dim * jnp.log(var))

    return logpdf


def mode_weights(dim: int, n: int, seeds: int) -> list[dict]:
    """One row per sampler: mean and largest mode-weight error over ``seeds`` runs, evaluations, seconds."""
    rows = []
    for label, (sampler, cost) in _samplers(n).items():
        prog = gendsl.compile(gendsl.parse(f"model m {{\n  x: real[{dim}] ~ energy({_energy(dim)}, sampler={sampler})\n}}\n"))
        errors, t0 = [], time.perf_counter()
        for seed in range(seeds):
            draws, info = prog.sample_with_info({}, jax.random.key(seed), n)
            errors.append(_error(np.asarray(draws["x"]), dim))
        rows.append({"dim": dim, "sampler": label, "error": float(np.mean(errors)), "worst": float(np.max(errors)),
                     "evaluations": int(cost(info["x"] if "x" in info else {})),
                     "seconds": (time.perf_counter() - t0) / seeds})
    for levels, steps in ((12, 20), (24, 40)):
        config = annealed.AnnealedConfig(levels, steps, 0.5)
        run = jax.jit(lambda k, u, c=config: annealed.run_annealed(c, _smoothed(dim), k, u,
                                                                   annealed.ladder(10.0, 0.05, c.levels)))
        errors, t0 = [], time.perf_counter()
        for seed in range(seeds):
            u0 = 10.0 * jax.random.normal(jax.random.key(100 + seed), (n, dim))
            errors.append(_error(np.asarray(run(jax.random.key(seed), u0)[0]), dim))
        rows.append({"dim": dim, "sampler": f"annealed({levels} levels x {steps}, closed form)",
                     "error": float(np.mean(errors)), "worst": float(np.max(errors)),
                     "evaluations": n * levels * (steps + 1), "seconds": (time.perf_counter() - t0) / seeds})
    return rows


ENERGY_ROWS = {
    "dsm(levels=1) + mala (the bench's row)":
        "energy(mlp(hidden=[64, 64]), train=dsm(sigma=0.1, levels=1), sampler=mala(step_size=0.01, steps=200))",
    "dsm(levels=1) + its default (smc from a fitted Gaussian)": "energy(mlp(hidden=[64, 64]), train=dsm(sigma=0.1, levels=1))",
    "dsm(levels=1) + tempering(16 ladders)":
        "energy(mlp(hidden=[64, 64]), train=dsm(sigma=0.1, levels=1), sampler=tempering(chains=16))",
    "the default: dsm (8 levels) + annealed, ema=0.999": "energy(mlp(hidden=[64, 64]))",
    "the default without the weights' average (ema=0)": "energy(mlp(hidden=[64, 64]), ema=0)",
    "the default objective + mala": "energy(mlp(hidden=[64, 64]), sampler=mala(step_size=0.01, steps=200))",
}
#: the 2-D data sets of the energy rows: gendsl's built-in sets, scikit-learn's circles (not tuned
#: on) and the moons in other units (x 10 and 0.1, shifted by (50, -3): what standardisation is for)
DATASETS = ("moons", "checkerboard", "circles", "moons in other units")


def _dataset(name: str, n: int, seed: int) -> np.ndarray:
    """``(n, 2)`` points of a 2-D data set; seeds give independent draws."""
    if name == "circles":
        from sklearn.datasets import make_circles
        return make_circles(n, noise=0.05, factor=0.5, random_state=seed)[0].astype(np.float32)
    if name == "moons in other units":
        return _dataset("moons", n, seed) * np.float32([10.0, 0.1]) + np.float32([50.0, -3.0])
    return builtin(name, n, seed=seed).arrays["x"]


def energy_row(dataset: str, steps: int, n: int, seed: int = 0) -> list[dict]:
    """Energy distance / noise floor of each energy row on ``dataset`` (``n`` held-out points); the
    training data, held-out data and the floor's fresh draw are independent draws of the set."""
    train = _dataset(dataset, 10 * n, 3 * seed)
    test, fresh = _dataset(dataset, n, 3 * seed + 1), _dataset(dataset, n, 3 * seed + 2)
    floor = energy_distance(fresh, test, unbiased=False)
    rows = []
    for label, rhs in ENERGY_ROWS.items():
        prog = gendsl.compile(gendsl.parse(f"model m {{\n  data x: real[2]\n  x ~ {rhs}\n}}\n"))
        t0 = time.perf_counter()
        fit = prog.fit({"x": train}, steps=steps, key=jax.random.key(seed), batch_size=256)
        t1 = time.perf_counter()
        draws = np.asarray(prog.sample(fit.params, jax.random.key(seed + 1), n)["x"])
        rows.append({"dataset": dataset, "seed": seed, "energy": label,
                     "ed_over_floor": energy_distance(draws, test, unbiased=False) / floor,
                     "train_s": t1 - t0, "sample_s": time.perf_counter() - t1,
                     "evaluations_per_draw": prog.plan.node("x").mechanism.cost()})
    return rows


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=2000, help="training steps of the energy rows")
    parser.add_argument("--energy-seeds", type=int, default=2, help="seeds (data and training) of the energy rows")
    parser.add_argument("--energy-only", action="store_true", help="only the energy rows")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    result = {"mode_weights": [] if args.energy_only else [r for d in (2, 10) for r in mode_weights(d, args.draws, args.seeds)],
              "energy_rows": [r for ds in DATASETS for seed in range(args.energy_seeds)
                              for r in energy_row(ds, args.steps, 500, seed)]}
    print("| dim | sampler | mode-weight error (mean / worst) | evaluations | s per run |")
    print("| --- | --- | --- | --- | --- |")
    for r in result["mode_weights"]:
        print(f"| {r['dim']} | {r['sampler']} | {r['error']:.3f} / {r['worst']:.3f} | {r['evaluations']:,} | {r['seconds']:.1f} |")
    print("\n| data | energy | ED / noise floor (each seed) | evaluations per draw | train s | sample s |")
    print("| --- | --- | --- | --- | --- | --- |")
    for ds in DATASETS:
        for label in ENERGY_ROWS:
            rows = [r for r in result["energy_rows"] if r["dataset"] == ds and r["energy"] == label]
            ratios = " / ".join(f"{r['ed_over_floor']:.2f}" for r in rows)
            print(f"| {ds} | {label} | {ratios} | "
                  f"{rows[0]['evaluations_per_draw']} | {np.mean([r['train_s'] for r in rows]):.1f} | "
                  f"{np.mean([r['sample_s'] for r in rows]):.1f} |")
    if args.out is not None:
        args.out.write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
