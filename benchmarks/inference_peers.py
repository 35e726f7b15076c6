"""Posterior inference against its peers: gendsl, numpyro's NUTS and nutpie (PyMC models written to
match) on the posteriordb models of ``benchmarks/inference_posteriordb.py``, each run in a fresh
process, the samplers alternating.

    python benchmarks/inference_peers.py [--models ...] [--samplers gendsl numpyro nutpie nutpie-lowrank]
        [--repeats 1] [--out results.json]

A sampler is ``gendsl`` (its defaults), ``gendsl:OPTION=VALUE,...`` (e.g. ``gendsl:mass=fisher``,
``gendsl:target_accept=0.8``), ``numpyro`` (its NUTS defaults: diagonal mass matrix, target
acceptance 0.8, chains vectorized), ``nutpie`` (its defaults: Fisher diagonal, numba backend) or
``nutpie-lowrank`` (``low_rank_modified_mass_matrix=True``). All run 4 chains x 1,000 warm-up x
1,000 draws in double precision; nutpie with ``OPENBLAS_NUM_THREADS=1`` (on 2 cores OpenBLAS's
own thread pool otherwise fights nutpie's chain threads). Reported per run:

- ``e2e``: seconds from the start of the sampler's process (imports included) to the draws;
- ``compile``: gendsl its compile time; numpyro the first run minus a second run of the same
  shapes (its compiled program cached); nutpie ``compile_pymc_model``;
- ``sampling``: warm-up and draws without compilation (numpyro: the second run);
- ``ESS``: the smallest bulk ESS over every scalar of the model's latents (gendsl's estimator on
  every sampler's draws); ``ESS/s`` end to end and sampling only; ``ESS/grad`` per gradient
  evaluation after warm-up;
- divergences after warm-up; ``z``: the largest |mean - reference| / combined MC standard error
  over the latents (the references of ``benchmarks/inference_references.json``; pass below 4).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

T0 = time.perf_counter()
HERE = Path(__file__).resolve().parent
CHAINS, WARMUP, DRAWS = 4, 1000, 1000
SAMPLERS = ("gendsl", "numpyro", "nutpie", "nutpie-lowrank")


def _posteriordb():
    sys.path.insert(0, str(HERE))
    import inference_posteriordb

    return inference_posteriordb


def pymc_model(name: str, d: dict):
    """The gendsl model ``name`` of inference_posteriordb.MODELS written in PyMC, same names and
    parameterisation (the regressions on the raw covariate, as gendsl samples them)."""
    import numpy as np
    import pymc as pm
    import pytensor.tensor as pt

    a = {k: np.asarray(v, float) for k, v in d.items()}
    with pm.Model() as model:
        if name == "eight_schools":
            mu = pm.Normal("mu", 0, 5)
            tau = pm.HalfCauchy("tau", 5)
            theta_raw = pm.Normal("theta_raw", 0, 1, shape=int(d["J"]))
            pm.Normal("y", mu + tau * theta_raw, a["sigma"], observed=a["y"])
        elif name == "kilpisjarvi":
            alpha, beta = pm.Normal("alpha", 0, 100), pm.Normal("beta", 0, 100)
            sigma = pm.HalfNormal("sigma", 10)
            pm.Normal("temp", alpha + beta * a["year"], sigma, observed=a["temp"])
        elif name == "arK":
            alpha = pm.Normal("alpha", 0, 10)
            beta = pm.Normal("beta", 0, 10, shape=int(d["K"]))
            sigma = pm.HalfCauchy("sigma", 2.5)
            pm.Normal("y", alpha + pt.dot(a["lags"], beta), sigma, observed=a["y"])
        elif name == "gp_pois_regr":
            n = int(d["N"])
            rho, alpha = pm.Gamma("rho", 25, 4), pm.HalfNormal("alpha", 2)
            f_tilde = pm.Normal("f_tilde", 0, 1, shape=n)
            cov = alpha ** 2 * pt.exp(-a["sqdist"] / (2 * rho ** 2)) + 1e-9 * np.eye(n)
            pm.Poisson("k", pt.exp(pt.dot(pt.linalg.cholesky(cov), f_tilde)), observed=a["k"])
        elif name == "logearn_height":
            beta = pm.Normal("beta", 0, 1000, shape=2)
            sigma = pm.HalfNormal("sigma", 100)
            pm.Normal("log_earn", beta[0] + beta[1] * a["height"], sigma, observed=a["log_earn"])
        elif name == "logmesquite":
            cols = [np.log(a[c]) for c in ("diam1", "diam2", "canopy_height", "total_height", "density")]
            x = np.stack([np.ones_like(a["group"]), *cols, a["group"]], axis=1)
            beta = pm.Normal("beta", 0, 1000, shape=7)
            sigma = pm.HalfNormal("sigma", 100)
            pm.Normal("log_weight", pt.dot(x, beta), sigma, observed=a["log_weight"])
        else:
            raise KeyError(name)
    return model


def _gendsl(name: str, data: dict, options: dict, seed: int):
    import jax

    import gendsl

    db = _posteriordb()
    prog = gendsl.compile(gendsl.parse(db.MODELS[name]))
    post = prog.infer(data, key=jax.random.key(seed), num_chains=CHAINS, num_warmup=WARMUP, num_samples=DRAWS,
                      **options)
    draws = {k: post.samples[k] for k in post.latents}
    return draws, post.compile_seconds, post.sampling_seconds, int(post.num_steps.sum()), int(post.divergences)


def _numpyro(name: str, data: dict, seed: int):
    import jax
    import numpy as np
    from numpyro.infer import MCMC, NUTS

    jax.config.update("jax_enable_x64", True)
    db = _posteriordb()
    mcmc = MCMC(NUTS(db.numpyro_model(name, data)), num_warmup=WARMUP, num_samples=DRAWS, num_chains=CHAINS,
                chain_method="vectorized", progress_bar=False)
    t0 = time.perf_counter()
    mcmc.run(jax.random.key(seed), extra_fields=("num_steps", "diverging"))
    jax.block_until_ready(mcmc.get_samples())
    first = time.perf_counter() - t0
    draws = {k: np.asarray(v) for k, v in mcmc.get_samples(group_by_chain=True).items()}
    extra = mcmc.get_extra_fields()
    grads, divergences = int(np.sum(extra["num_steps"])), int(np.sum(extra["diverging"]))
    t0 = time.perf_counter()
    mcmc.run(jax.random.key(seed + 1), extra_fields=("num_steps", "diverging"))
    jax.block_until_ready(mcmc.get_samples())
    second = time.perf_counter() - t0
    return draws, first - second, second, grads, divergences


def _nutpie(name: str, data: dict, seed: int, low_rank: bool):
    import numpy as np
    import nutpie

    t0 = time.perf_counter()
    compiled = nutpie.compile_pymc_model(pymc_model(name, data))
    compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    idata = nutpie.sample(compiled, draws=DRAWS, tune=WARMUP, chains=CHAINS, seed=seed, progress_bar=False,
                          low_rank_modified_mass_matrix=low_rank)
    sampling = time.perf_counter() - t0
    draws = {k: np.asarray(v) for k, v in idata.posterior.data_vars.items()}
    stats = idata.sample_stats
    return draws, compile_s, sampling, int(stats["n_steps"].sum()), int(stats["diverging"].sum())


def worker(sampler: str, name: str, seed: int) -> dict:
    """One sampler on one model in this process: the row of the table (see the module doc)."""
    import numpy as np

    data = json.loads((_posteriordb().DATA / f"{name}.json").read_text())
    kind, _, spec = sampler.partition(":")
    if kind == "gendsl":
        options = {k: (v if k == "mass" else float(v)) for k, v in (kv.split("=") for kv in spec.split(",") if kv)}
        out = _gendsl(name, data, options, seed)
    elif kind == "numpyro":
        out = _numpyro(name, data, seed)
    elif kind in ("nutpie", "nutpie-lowrank"):
        out = _nutpie(name, data, seed, kind == "nutpie-lowrank")
    else:
        raise SystemExit(f"unknown sampler {sampler!r} (samplers: {', '.join(SAMPLERS)}, gendsl:OPTION=VALUE)")
    draws, compile_s, sampling, grads, divergences = out
    e2e = time.perf_counter() - T0
    from gendsl.numerics.diagnostics import summarize

    ref = json.loads((HERE / "inference_references.json").read_text())[f"posteriordb:{name}"]
    s = summarize({k: draws[k] for k in ref})
    ess = min(float(np.min(s[k]["ess_bulk"])) for k in ref)
    z = max(float(np.max(np.abs(np.atleast_1d(s[k]["mean"]) - r["mean"])
                         / np.hypot(np.atleast_1d(s[k]["mcse_mean"]), r["mcse_mean"]))) for k, r in ref.items())
    return {"model": name, "sampler": sampler, "e2e_s": e2e, "compile_s": compile_s, "sampling_s": sampling,
            "min_ess": ess, "ess_per_s_e2e": ess / e2e, "ess_per_s_sampling": ess / sampling,
            "ess_per_grad": ess / grads, "gradients": grads, "divergences": divergences, "max_z": z}


def run_one(sampler: str, name: str, seed: int) -> dict:
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, __file__, "--worker", sampler, name, str(seed)], env=env,
                          capture_output=True, text=True)
    if proc.returncode:
        return {"model": name, "sampler": sampler, "error": proc.stderr.strip().splitlines()[-1:]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", default=None)
    p.add_argument("--samplers", nargs="+", default=list(SAMPLERS))
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--out", default=None)
    p.add_argument("--worker", nargs=3, metavar=("SAMPLER", "MODEL", "SEED"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        sampler, name, seed = args.worker
        print(json.dumps(worker(sampler, name, int(seed))))
        return
    models = args.models or list(_posteriordb().MODELS)
    print("| model | sampler | ESS/s e2e | ESS/s sampling | ESS/grad | min ESS | compile s | sampling s | e2e s | "
          "divergences | max z |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    rows = []
    for r in range(args.repeats):
        for i, name in enumerate(models):
            order = args.samplers if (i + r) % 2 == 0 else args.samplers[::-1]  # alternate who goes first
            for sampler in order:
                row = run_one(sampler, name, seed=r)
                rows.append(row)
                if "error" in row:
                    print(f"| {name} | {sampler} | failed: {row['error']} |", flush=True)
                    continue
                print(f"| {name} | {sampler} | {row['ess_per_s_e2e']:.1f} | {row['ess_per_s_sampling']:.1f} | "
                      f"{row['ess_per_grad']:.4f} | {row['min_ess']:.0f} | {row['compile_s']:.1f} | "
                      f"{row['sampling_s']:.2f} | {row['e2e_s']:.1f} | {row['divergences']} | {row['max_z']:.2f} |",
                      flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
