"""Posterior inference: ``gendsl infer`` against numpyro's NUTS and against the same posterior written
by hand in blackjax, on eight schools (non-centred), a logistic regression and a hierarchical
regression (varying intercepts, non-centred).

    python benchmarks/inference.py [--models eight_schools logistic hierarchical] [--chains 4]
        [--warmup 1000] [--samples 1000] [--repeats 3] [--reference] [--out results.json]

All three run NUTS in double precision with the same settings: gendsl's default target acceptance
(0.95), Stan's windowed warm-up of the step size and of the inverse mass matrix (dense when the
model has at most ``DENSE_MAX_DIM`` unconstrained dimensions, diagonal above, gendsl's ``auto``
rule), the same numbers of chains, warm-up transitions and draws. Each library runs once to
compile, then ``--repeats`` more times; reported per library:

- ``compile``: seconds of the first call minus the median of the later ones (tracing and XLA);
- ``run``: median seconds of a call after compilation (warm-up and sampling of every chain);
- ``min ESS``: the smallest bulk ESS over every scalar parameter (``gendsl.numerics.diagnostics.ess_bulk``
  on each library's draws, so the estimator is the same), median over the repeats;
- ``ESS/s``: ``min ESS / run``, median over the repeats (and ``ESS/s e2e`` with the compile
  time added to the first run);
- divergences after warm-up (total over the repeats).

numpyro runs its chains ``vectorized`` (one program, as gendsl) and ``sequential``; gendsl runs
its default ``vectorized`` chains. The hand-written blackjax program is the library's documented
recipe: ``vmap`` of ``window_adaptation(...).run`` then a ``lax.scan`` of ``vmap(nuts.step)``,
both inside one ``jit``.

Accuracy: gendsl's posterior means and sds against a reference posterior (numpyro, 8 chains x
25,000 draws after 2,000 warm-up; ``--reference`` recomputes them into
``benchmarks/inference_references.json``): every mean within 4 Monte-Carlo standard errors, every
sd within 10%, every R-hat below 1.01.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import blackjax
import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from jax.scipy import stats as jstats
from numpyro.infer import MCMC, NUTS

import gendsl
from gendsl.numerics.diagnostics import ess_bulk, summarize
from gendsl.numerics.kernels import DEFAULT_TARGET, DENSE_MAX_DIM

#: the posteriordb data sets (GENDSL_POSTERIORS overrides): ../shared/data/posteriors beside the checkout
DATA = Path(os.environ.get("GENDSL_POSTERIORS", Path(__file__).resolve().parents[2] / "shared" / "data" / "posteriors"))
REFERENCES = Path(__file__).with_name("inference_references.json")
TARGET_ACCEPT = DEFAULT_TARGET["nuts"]


@dataclass
class Case:
    """One posterior written three ways."""

    text: str  # the .gen model
    data: dict
    numpyro_model: Callable
    numpyro_args: tuple
    dim: int  # unconstrained dimensions
    logdensity: Callable  # hand-written, flat unconstrained vector -> scalar
    constrain: Callable  # flat unconstrained vector -> {name: constrained value}


def _half_cauchy_logpdf(x, scale):
    return jnp.log(2 / (jnp.pi * scale)) - jnp.log1p((x / scale) ** 2)


def _half_normal_logpdf(x, scale):
    return jnp.log(2.0) + jstats.norm.logpdf(x, 0.0, scale)


# -- eight schools, non-centred ------------------------------------------------------------------------

EIGHT_SCHOOLS = (Path(__file__).resolve().parents[1] / "examples" / "eight_schools.gen").read_text()


def eight_schools() -> Case:
    data = json.loads((DATA / "eight_schools.json").read_text())
    y, sigma, j = np.asarray(data["y"], float), np.asarray(data["sigma"], float), int(data["J"])

    def model(y, sigma):
        mu = numpyro.sample("mu", dist.Normal(0, 5))
        tau = numpyro.sample("tau", dist.HalfCauchy(5))
        theta_raw = numpyro.sample("theta_raw", dist.Normal(0, 1).expand([j]))
        numpyro.sample("y", dist.Normal(mu + tau * theta_raw, sigma), obs=y)

    def logdensity(z):
        mu, log_tau, theta_raw = z[0], z[1], z[2:]
        tau = jnp.exp(log_tau)
        return (jstats.norm.logpdf(mu, 0, 5) + _half_cauchy_logpdf(tau, 5.0) + log_tau
                + jnp.sum(jstats.norm.logpdf(theta_raw)) + jnp.sum(jstats.norm.logpdf(y, mu + tau * theta_raw, sigma)))

    def constrain(z):
        return {"mu": z[0], "tau": jnp.exp(z[1]), "theta_raw": z[2:]}

    return Case(EIGHT_SCHOOLS, data, model, (y, sigma), 2 + j, logdensity, constrain)


# -- logistic regression ------------------------------------------------------------------------------

LOGISTIC = """
model logistic {
  data N: int
  data K: int
  data X: real[N, K]
  data y: int[N]
  alpha ~ normal(0, 2.5)
  beta: real[K] ~ normal(0, 2.5)
  y ~ bernoulli_logit(alpha + dot(X, beta))
}
"""


def logistic(n: int = 1000, k: int = 5, seed: int = 0) -> Case:
    """Correlated covariates (AR(1) correlation 0.6), a fixed truth, outcomes drawn once (seed 0)."""
    rng = np.random.default_rng(seed)
    corr = 0.6 ** np.abs(np.subtract.outer(np.arange(k), np.arange(k)))
    x = rng.normal(size=(n, k)) @ np.linalg.cholesky(corr).T
    truth = np.array([1.0, -0.5, 0.25, 0.0, 0.75])[:k]
    y = (rng.uniform(size=n) < 1 / (1 + np.exp(-(-0.5 + x @ truth)))).astype(np.int64)
    data = {"N": n, "K": k, "X": x, "y": y}

    def model(x, y):
        alpha = numpyro.sample("alpha", dist.Normal(0, 2.5))
        beta = numpyro.sample("beta", dist.Normal(0, 2.5).expand([k]))
        numpyro.sample("y", dist.Bernoulli(logits=alpha + x @ beta), obs=y)

    def logdensity(z):
        alpha, beta = z[0], z[1:]
        eta = alpha + x @ beta
        return (jstats.norm.logpdf(alpha, 0, 2.5) + jnp.sum(jstats.norm.logpdf(beta, 0, 2.5))
                + jnp.sum(y * eta - jax.nn.softplus(eta)))

    def constrain(z):
        return {"alpha": z[0], "beta": z[1:]}

    return Case(LOGISTIC, data, model, (x, y), 1 + k, logdensity, constrain)


# -- hierarchical regression --------------------------------------------------------------------------

HIERARCHICAL = """
model hierarchical {
  data N: int
  data J: int
  data g: int[N]
  data x: real[N]
  data y: real[N]
  mu_a ~ normal(0, 5)
  tau_a ~ half_normal(2)
  a_raw: real[J] ~ normal(0, 1)
  a = mu_a + tau_a * a_raw
  b ~ normal(0, 5)
  sigma ~ half_normal(2)
  y ~ normal(a[g] + b * x, sigma)
}
"""


def hierarchical(n: int = 200, j: int = 20, seed: int = 1) -> Case:
    """Varying intercepts (truth: mu_a = 1, tau_a = 0.7), a common slope 0.5, noise sd 1.5."""
    rng = np.random.default_rng(seed)
    g = np.arange(n) % j
    x = rng.normal(size=n)
    a = 1.0 + 0.7 * rng.normal(size=j)
    y = a[g] + 0.5 * x + 1.5 * rng.normal(size=n)
    data = {"N": n, "J": j, "g": g, "x": x, "y": y}

    def model(g, x, y):
        mu_a = numpyro.sample("mu_a", dist.Normal(0, 5))
        tau_a = numpyro.sample("tau_a", dist.HalfNormal(2))
        a_raw = numpyro.sample("a_raw", dist.Normal(0, 1).expand([j]))
        b = numpyro.sample("b", dist.Normal(0, 5))
        sigma = numpyro.sample("sigma", dist.HalfNormal(2))
        numpyro.sample("y", dist.Normal((mu_a + tau_a * a_raw)[g] + b * x, sigma), obs=y)

    def logdensity(z):
        mu_a, log_tau, a_raw, b, log_sigma = z[0], z[1], z[2:2 + j], z[2 + j], z[3 + j]
        tau, sigma = jnp.exp(log_tau), jnp.exp(log_sigma)
        mean = (mu_a + tau * a_raw)[g] + b * x
        return (jstats.norm.logpdf(mu_a, 0, 5) + _half_normal_logpdf(tau, 2.0) + log_tau
                + jnp.sum(jstats.norm.logpdf(a_raw)) + jstats.norm.logpdf(b, 0, 5)
                + _half_normal_logpdf(sigma, 2.0) + log_sigma + jnp.sum(jstats.norm.logpdf(y, mean, sigma)))

    def constrain(z):
        return {"mu_a": z[0], "tau_a": jnp.exp(z[1]), "a_raw": z[2:2 + j], "b": z[2 + j], "sigma": jnp.exp(z[3 + j])}

    return Case(HIERARCHICAL, data, model, (g, x, y), 4 + j, logdensity, constrain)


CASES = {"eight_schools": eight_schools, "logistic": logistic, "hierarchical": hierarchical}


# -- the three runners: each returns (draws {name: (chains, draws, ...)}, divergences) ------------------


def run_gendsl(case: Case, prog, key, chains, warmup, samples):
    post = prog.infer(case.data, key=key, num_chains=chains, num_samples=samples, num_warmup=warmup)
    draws = {k: post.samples[k] for k in post.latents}
    return draws, int(post.divergences), post


def numpyro_runner(case: Case, chains, warmup, samples, method):
    kernel = NUTS(case.numpyro_model, target_accept_prob=TARGET_ACCEPT, dense_mass=case.dim <= DENSE_MAX_DIM)
    mcmc = MCMC(kernel, num_warmup=warmup, num_samples=samples, num_chains=chains, chain_method=method,
                progress_bar=False, jit_model_args=True)

    def run(key):
        mcmc.run(key, *case.numpyro_args, extra_fields=("diverging",))
        draws = {k: np.asarray(v) for k, v in mcmc.get_samples(group_by_chain=True).items()}
        return draws, int(np.asarray(mcmc.get_extra_fields()["diverging"]).sum())

    return run


def blackjax_runner(case: Case, chains, warmup, samples):
    """blackjax's documented multi-chain recipe, written by hand for this posterior."""
    dense = case.dim <= DENSE_MAX_DIM

    @jax.jit
    def program(key, init):
        warm_key, sample_key = jax.random.split(key)
        adaptation = blackjax.window_adaptation(blackjax.nuts, case.logdensity, is_mass_matrix_diagonal=not dense,
                                                target_acceptance_rate=TARGET_ACCEPT)
        (states, params), _ = jax.vmap(lambda k, z: adaptation.run(k, z, num_steps=warmup))(
            jax.random.split(warm_key, chains), init)

        def one_step(states, key):
            def step(k, state, step_size, imm):
                return blackjax.nuts(case.logdensity, step_size, imm).step(k, state)

            states, info = jax.vmap(step)(jax.random.split(key, chains), states, params["step_size"],
                                          params["inverse_mass_matrix"])
            return states, (states.position, info.is_divergent)

        _, (positions, divergent) = jax.lax.scan(one_step, states, jax.random.split(sample_key, samples))
        constrained = jax.vmap(jax.vmap(case.constrain))(jnp.swapaxes(positions, 0, 1))
        return constrained, divergent.sum()

    def run(key):
        init = jax.random.uniform(jax.random.fold_in(key, 1), (chains, case.dim), jnp.float64, -2.0, 2.0)
        draws, divergent = jax.block_until_ready(program(key, init))
        return {k: np.asarray(v) for k, v in draws.items()}, int(divergent)

    return run


# -- measuring ------------------------------------------------------------------------------------------


def min_ess(draws: dict) -> float:
    return float(min(np.nanmin(ess_bulk(np.asarray(v, dtype=np.float64))) for v in draws.values()))


def measure(run: Callable, repeats: int, seed: int) -> dict:
    """Time a first call (compilation included) and ``repeats`` more; ESS of every call."""
    times, esses, divergences = [], [], 0
    for r in range(repeats + 1):
        t0 = time.perf_counter()
        draws, div = run(jax.random.key(seed + r))
        times.append(time.perf_counter() - t0)
        esses.append(min_ess(draws))
        divergences += div
    run_s = float(np.median(times[1:]))
    ess = float(np.median(esses))
    compile_s = max(times[0] - run_s, 0.0)
    return {"compile": compile_s, "run": run_s, "min_ess": ess, "ess_per_s": float(np.median(np.array(esses[1:]) / np.array(times[1:]))),
            "ess_per_s_e2e": esses[0] / times[0], "divergences": divergences}


def reference(name: str, case: Case, recompute: bool) -> dict:
    refs = json.loads(REFERENCES.read_text()) if REFERENCES.exists() else {}
    if name not in refs or recompute:
        kernel = NUTS(case.numpyro_model, target_accept_prob=0.95, dense_mass=case.dim <= DENSE_MAX_DIM)
        mcmc = MCMC(kernel, num_warmup=2000, num_samples=25_000, num_chains=8, chain_method="vectorized",
                    progress_bar=False)
        mcmc.run(jax.random.key(2024), *case.numpyro_args)
        s = summarize({k: np.asarray(v) for k, v in mcmc.get_samples(group_by_chain=True).items()})
        refs[name] = {k: {"mean": np.atleast_1d(v["mean"]).tolist(), "sd": np.atleast_1d(v["sd"]).tolist(),
                          "mcse_mean": np.atleast_1d(v["mcse_mean"]).tolist()} for k, v in s.items()}
        REFERENCES.write_text(json.dumps(refs, indent=1))
    return refs[name]


def accuracy(post, ref: dict) -> dict:
    """Worst |z| of the means, worst relative sd error, worst R-hat over every scalar parameter."""
    s = post.summary()
    worst_z, worst_sd, worst_rhat = 0.0, 0.0, 0.0
    for name, r in ref.items():
        mean, sd = np.atleast_1d(s[name]["mean"]), np.atleast_1d(s[name]["sd"])
        se = np.hypot(np.atleast_1d(s[name]["mcse_mean"]), np.asarray(r["mcse_mean"]))
        worst_z = max(worst_z, float(np.max(np.abs(mean - np.asarray(r["mean"])) / se)))
        worst_sd = max(worst_sd, float(np.max(np.abs(sd / np.asarray(r["sd"]) - 1))))
        worst_rhat = max(worst_rhat, float(np.max(np.atleast_1d(s[name]["r_hat"]))))
    return {"max_abs_z_mean": worst_z, "max_rel_sd_error": worst_sd, "max_r_hat": worst_rhat,
            "ok": worst_z < 4 and worst_sd < 0.10 and worst_rhat < 1.01}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", default=list(CASES), choices=list(CASES))
    p.add_argument("--chains", type=int, default=4)
    p.add_argument("--warmup", type=int, default=1000)
    p.add_argument("--samples", type=int, default=1000)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--reference", action="store_true", help="recompute the reference posteriors")
    p.add_argument("--out", default=None, help="write the rows as JSON")
    args = p.parse_args()
    rows = []
    with jax.enable_x64(True):
        for name in args.models:
            case = CASES[name]()
            ref = reference(name, case, args.reference)
            prog = gendsl.compile(gendsl.parse(case.text))
            posts = []

            def gendsl_run(key):
                draws, div, post = run_gendsl(case, prog, key, args.chains, args.warmup, args.samples)
                posts.append(post)
                return draws, div

            results = {
                "gendsl": measure(gendsl_run, args.repeats, 0),
                "blackjax (by hand)": measure(blackjax_runner(case, args.chains, args.warmup, args.samples), args.repeats, 0),
                "numpyro vectorized": measure(numpyro_runner(case, args.chains, args.warmup, args.samples, "vectorized"),
                                              args.repeats, 0),
                "numpyro sequential": measure(numpyro_runner(case, args.chains, args.warmup, args.samples, "sequential"),
                                              args.repeats, 0),
            }
            acc = accuracy(posts[-1], ref)
            for lib, r in results.items():
                rows.append({"model": name, "library": lib, **r, **({"accuracy": acc} if lib == "gendsl" else {})})
            print_rows([r for r in rows if r["model"] == name], acc)
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=1))


def print_rows(rows: list[dict], acc: dict) -> None:
    print(f"\n### {rows[0]['model']}\n")
    print("| library | compile s | run s | min ESS | ESS/s | ESS/s e2e | divergences |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        print(f"| {r['library']} | {r['compile']:.1f} | {r['run']:.2f} | {r['min_ess']:.0f} | {r['ess_per_s']:.0f} "
              f"| {r['ess_per_s_e2e']:.0f} | {r['divergences']} |")
    print(f"\naccuracy of gendsl against the reference: max |z| of means {acc['max_abs_z_mean']:.2f}, "
          f"max sd error {100 * acc['max_rel_sd_error']:.1f}%, max R-hat {acc['max_r_hat']:.4f} -> "
          f"{'ok' if acc['ok'] else 'FAIL'}")


if __name__ == "__main__":
    main()
