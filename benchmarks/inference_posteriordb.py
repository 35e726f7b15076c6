"""Accuracy of ``gendsl infer`` on published posteriors: the posteriordb data sets in
../shared/data/posteriors (beside the checkout), each model written in gendsl, its defaults (4 chains, 1,000 warm-up
and 1,000 draws, NUTS), against a long numpyro reference run.

    python benchmarks/inference_posteriordb.py [--models ...] [--reference]

Pass: every posterior mean within 4 Monte-Carlo standard errors of the reference (both runs' MC
errors combined), every sd within 10%, every R-hat below 1.01, no divergences. The references
(numpyro NUTS, 8 chains x 10,000 draws after 2,000 warm-up, target acceptance 0.95) are cached in
``benchmarks/inference_references.json`` (``--reference`` recomputes them). Regressions on an
unscaled covariate (``kilpisjarvi``, ``logearn_height``) are written for numpyro with the
covariate centred and the original intercept's prior added back as a factor: the same posterior,
which numpyro's own warm-up could not precondition otherwise. Flat priors of the published
models are written as normal(0, 1000).
"""

from __future__ import annotations

import argparse
import json
import os
import time
import warnings
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from numpyro.infer import MCMC, NUTS

import gendsl
from gendsl.numerics.diagnostics import summarize

#: the posteriordb data sets (GENDSL_POSTERIORS overrides): ../shared/data/posteriors beside the checkout
DATA = Path(os.environ.get("GENDSL_POSTERIORS", Path(__file__).resolve().parents[2] / "shared" / "data" / "posteriors"))
REFERENCES = Path(__file__).with_name("inference_references.json")

MODELS = {
    "eight_schools": (Path(__file__).resolve().parents[1] / "examples" / "eight_schools.gen").read_text(),
    "kilpisjarvi": """
model kilpisjarvi {
  data N: int
  data year: real[N]
  data temp: real[N]
  alpha ~ normal(0, 100)
  beta ~ normal(0, 100)
  sigma ~ half_normal(10)
  temp ~ normal(alpha + beta * year, sigma)
}""",
    "arK": """
model arK {
  data M: int
  data K: int
  data lags: real[M, K]
  data y: real[M]
  alpha ~ normal(0, 10)
  beta: real[K] ~ normal(0, 10)
  sigma ~ half_cauchy(2.5)
  y ~ normal(alpha + dot(lags, beta), sigma)
}""",
    "gp_pois_regr": """
model gp_pois_regr {
  data N: int
  data sqdist: real[N, N]
  data k: int[N]
  rho ~ gamma(25, 4)
  alpha ~ half_normal(2)
  f_tilde: real[N] ~ normal(0, 1)
  f = dot(cholesky(alpha^2 * exp(-sqdist / (2 * rho^2)) + 1e-9 * eye(N)), f_tilde)
  k ~ poisson_log(f)
}""",
    "logearn_height": """
model logearn_height {
  data N: int
  data height: real[N]
  data log_earn: real[N]
  beta: real[2] ~ normal(0, 1000)
  sigma ~ half_normal(100)
  log_earn ~ normal(beta[0] + beta[1] * height, sigma)
}""",
    "logmesquite": """
model logmesquite {
  data N: int
  data weight: real[N]
  data diam1: real[N]
  data diam2: real[N]
  data canopy_height: real[N]
  data total_height: real[N]
  data density: real[N]
  data group: real[N]
  data log_weight: real[N]
  beta: real[7] ~ normal(0, 1000)
  sigma ~ half_normal(100)
  log_weight ~ normal(beta[0] + beta[1] * log(diam1) + beta[2] * log(diam2) + beta[3] * log(canopy_height) + beta[4] * log(total_height) + beta[5] * log(density) + beta[6] * group, sigma)
}""",
}


def _centred_regression(x, y, prior_sd, slope_sd, sigma_sd, names):
    """y ~ normal(a0 + a1 x, sigma) with x centred for sampling; a0's prior added back as a factor."""
    xbar = float(np.mean(x))

    def model():
        a = numpyro.sample("a", dist.ImproperUniform(dist.constraints.real, (), ()))
        slope = numpyro.sample("slope", dist.Normal(0, slope_sd))
        intercept = a - slope * xbar
        numpyro.factor("intercept_prior", dist.Normal(0, prior_sd).log_prob(intercept))
        sigma = numpyro.sample("sigma", dist.HalfNormal(sigma_sd))
        numpyro.sample("y", dist.Normal(a + slope * (x - xbar), sigma), obs=y)
        names(intercept, slope)

    return model


def numpyro_model(name: str, d: dict):
    """The reference model and the names of its draws in gendsl's terms."""
    a = {k: jnp.asarray(v) for k, v in d.items()}
    if name == "eight_schools":
        def model():
            mu = numpyro.sample("mu", dist.Normal(0, 5))
            tau = numpyro.sample("tau", dist.HalfCauchy(5))
            theta_raw = numpyro.sample("theta_raw", dist.Normal(0, 1).expand([int(d["J"])]))
            numpyro.sample("y", dist.Normal(mu + tau * theta_raw, a["sigma"]), obs=a["y"])
        return model
    if name == "kilpisjarvi":
        return _centred_regression(a["year"], a["temp"], 100.0, 100.0, 10.0, lambda i, s: (
            numpyro.deterministic("alpha", i), numpyro.deterministic("beta", s)))
    if name == "logearn_height":
        return _centred_regression(a["height"], a["log_earn"], 1000.0, 1000.0, 100.0, lambda i, s: (
            numpyro.deterministic("beta", jnp.stack([i, s]))))
    if name == "arK":
        def model():
            alpha = numpyro.sample("alpha", dist.Normal(0, 10))
            beta = numpyro.sample("beta", dist.Normal(0, 10).expand([int(d["K"])]))
            sigma = numpyro.sample("sigma", dist.HalfCauchy(2.5))
            numpyro.sample("y", dist.Normal(alpha + a["lags"] @ beta, sigma), obs=a["y"])
        return model
    if name == "gp_pois_regr":
        def model():
            rho = numpyro.sample("rho", dist.Gamma(25, 4))
            alpha = numpyro.sample("alpha", dist.HalfNormal(2))
            f_tilde = numpyro.sample("f_tilde", dist.Normal(0, 1).expand([int(d["N"])]))
            cov = alpha ** 2 * jnp.exp(-a["sqdist"] / (2 * rho ** 2)) + 1e-9 * jnp.eye(int(d["N"]))
            numpyro.sample("k", dist.Poisson(jnp.exp(jnp.linalg.cholesky(cov) @ f_tilde)), obs=a["k"])
        return model
    if name == "logmesquite":
        cols = [jnp.log(a[c]) for c in ("diam1", "diam2", "canopy_height", "total_height", "density")] + [a["group"]]
        x = jnp.stack([jnp.ones_like(a["group"]), *cols], axis=1)

        def model():
            beta = numpyro.sample("beta", dist.Normal(0, 1000).expand([7]))
            sigma = numpyro.sample("sigma", dist.HalfNormal(100))
            numpyro.sample("log_weight", dist.Normal(x @ beta, sigma), obs=a["log_weight"])
        return model
    raise KeyError(name)


def reference(name: str, latents, recompute: bool) -> dict:
    refs = json.loads(REFERENCES.read_text()) if REFERENCES.exists() else {}
    key = f"posteriordb:{name}"
    if key not in refs or recompute:
        data = json.loads((DATA / f"{name}.json").read_text())
        mcmc = MCMC(NUTS(numpyro_model(name, data), target_accept_prob=0.95), num_warmup=2000, num_samples=10_000,
                    num_chains=8, chain_method="vectorized", progress_bar=False)
        mcmc.run(jax.random.key(2024))
        draws = {k: np.asarray(v) for k, v in mcmc.get_samples(group_by_chain=True).items() if k in latents}
        s = summarize(draws)
        refs[key] = {k: {stat: np.atleast_1d(s[k][stat]).tolist() for stat in ("mean", "sd", "mcse_mean", "r_hat")}
                     for k in latents}
        REFERENCES.write_text(json.dumps(refs, indent=1))
    return refs[key]


def check(name: str, recompute: bool) -> dict:
    data = json.loads((DATA / f"{name}.json").read_text())
    prog = gendsl.compile(gendsl.parse(MODELS[name]))
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        post = prog.infer(data, key=jax.random.key(0))
    wall = time.perf_counter() - t0
    with jax.enable_x64(True):
        ref = reference(name, post.latents, recompute)
    s = post.summary()
    worst_z = worst_sd = worst_rhat = 0.0
    for k, r in ref.items():
        se = np.hypot(np.atleast_1d(s[k]["mcse_mean"]), r["mcse_mean"])
        worst_z = max(worst_z, float(np.max(np.abs(np.atleast_1d(s[k]["mean"]) - r["mean"]) / se)))
        worst_sd = max(worst_sd, float(np.max(np.abs(np.atleast_1d(s[k]["sd"]) / r["sd"] - 1))))
        worst_rhat = max(worst_rhat, float(np.max(s[k]["r_hat"])))
    ok = worst_z < 4 and worst_sd < 0.1 and worst_rhat < 1.01 and int(post.divergences) == 0
    min_ess = min(float(np.min(s[k]["ess_bulk"])) for k in post.latents)
    return {"model": name, "max_abs_z_mean": worst_z, "max_rel_sd_error": worst_sd, "max_r_hat": worst_rhat,
            "divergences": int(post.divergences), "min_ess_bulk": min_ess, "compile_s": post.compile_seconds,
            "run_s": post.sampling_seconds, "wall_s": wall, "ok": ok}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    p.add_argument("--reference", action="store_true", help="recompute the reference posteriors")
    p.add_argument("--out", default=None)
    args = p.parse_args()
    print("| model | max abs z (means) | max sd error | max R-hat | divergences | min ESS | compile s | run s | ok |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    rows = []
    for name in args.models:
        r = check(name, args.reference)
        rows.append(r)
        print(f"| {name} | {r['max_abs_z_mean']:.2f} | {100 * r['max_rel_sd_error']:.1f}% | {r['max_r_hat']:.4f} | "
              f"{r['divergences']} | {r['min_ess_bulk']:.0f} | {r['compile_s']:.1f} | {r['run_s']:.2f} | "
              f"{'yes' if r['ok'] else 'NO'} |", flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
