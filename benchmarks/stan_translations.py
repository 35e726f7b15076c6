"""Unseen Stan models: ``gendsl infer`` (its defaults: NUTS, 4 chains, 1,000 warm-up, 1,000 draws)
on the gendsl translations in ``examples/stan_*.gen`` (posteriordb / Stan example models written
from memory) against the same models written by hand in numpyro (NUTS, 4 chains x 5,000 draws
after 1,000 warm-up, target acceptance 0.95, double precision).

    python benchmarks/stan_translations.py [--models ...] [--simulate] [--reference]

The data were simulated from each model with known parameters (``--simulate`` rewrites
``examples/stan_NAME.json``, numpy seed 0). Pass: every posterior mean within 4 Monte-Carlo standard
errors of the reference (both runs' MC errors combined), every sd within 10%, every R-hat below
1.01, no divergences. Both samplers start arma11 at theta = 0 (``INIT``); gendsl runs varying_slopes
with a diagonal mass matrix (``OPTIONS``; its default, low-rank at 26 dimensions, gives one divergence
and R-hat 1.014 there). References are cached
in ``benchmarks/stan_references.json`` (``--reference`` recomputes them).
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from numpyro.distributions import constraints
from numpyro.infer import MCMC, NUTS, init_to_value

import gendsl
from gendsl.numerics.diagnostics import summarize

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
#: translations not yet measured to the end (too slow for the examples' smoke test in CI)
PENDING = Path(__file__).resolve().parent / "pending"


def _source(name: str, suffix: str) -> Path:
    """``stan_NAME.gen`` / ``.json``: in examples/, or in benchmarks/pending/ for a pending one."""
    path = EXAMPLES / f"stan_{name}{suffix}"
    return path if path.exists() else PENDING / path.name
REFERENCES = Path(__file__).with_name("stan_references.json")
MODELS = ("garch11", "arma11", "hmm_example", "normal_mixture", "one_comp_mm_elim_abs", "lotka_volterra",
          "low_dim_gauss_mix", "hmm_gaussian", "varying_slopes")
#: starting values given to both samplers: ARMA(1,1) chains started at |theta| > 1 (random starts
#: in [-2, 2]) begin where the errors grow as theta^T (log density about -1e50) and stay stuck there
INIT = {"arma11": {"theta": 0.0}}
#: gendsl infer options beyond its defaults (``gendsl infer ... --mass diagonal``)
OPTIONS = {"varying_slopes": {"mass": "diagonal"}}


def _pk_rate(t, c, args):
    k_a, K_m, V_m, D, V = args
    return jnp.where(t > 0, jnp.exp(-k_a * t) * D * k_a / V, 0.0) - (V_m / V) * c / (K_m + c)


def _pk_solve(times, c0, args, rtol=1e-6, atol=1e-6):
    """C at ``times`` ([N_t, 1]) from C(0) = c0 under :func:`_pk_rate`, Tsit5 as in gendsl's ode."""
    sol = diffrax.diffeqsolve(diffrax.ODETerm(_pk_rate), diffrax.Tsit5(), 0.0, times[-1], None, c0, args,
                              saveat=diffrax.SaveAt(ts=times), max_steps=4096, throw=False,
                              stepsize_controller=diffrax.PIDController(rtol=rtol, atol=atol, dtmin=None))
    return sol.ys


def _lv_rate(t, z, theta):
    return jnp.stack([(theta[0] - theta[1] * z[1]) * z[0], (-theta[2] + theta[3] * z[0]) * z[1]])


def _lv_solve(ts, z0, theta, rtol=1e-5, atol=1e-3, max_steps=500):
    """z at ``ts`` ([N, 2]) from z(0) = z0 under Lotka-Volterra, Tsit5 as in gendsl's ode."""
    sol = diffrax.diffeqsolve(diffrax.ODETerm(_lv_rate), diffrax.Tsit5(), 0.0, ts[-1], None, z0, theta,
                              saveat=diffrax.SaveAt(ts=ts), max_steps=max_steps, throw=False,
                              stepsize_controller=diffrax.PIDController(rtol=rtol, atol=atol, dtmin=None))
    return sol.ys


def _hmm_draw(rng, T, init, trans, mu, sigma):
    z = [rng.choice(len(init), p=init)]
    for _ in range(T - 1):
        z.append(rng.choice(len(init), p=trans[z[-1]]))
    z = np.array(z)
    return mu[z] + sigma[z] * rng.normal(size=T)


def simulate(name: str, rng: np.random.Generator) -> dict:
    """One data set drawn from the model at known parameters."""
    if name == "garch11":
        T, mu, a0, a1, b1, s1 = 200, 0.5, 0.2, 0.3, 0.5, 1.0
        y, s = np.zeros(T), s1
        for t in range(T):
            if t:
                s = np.sqrt(a0 + a1 * (y[t - 1] - mu) ** 2 + b1 * s ** 2)
            y[t] = mu + s * rng.normal()
        return {"T": T, "y": y.tolist(), "sigma1": s1}
    if name == "arma11":
        T, mu, phi, theta, sigma = 200, 1.0, 0.5, 0.3, 1.0
        err = sigma * rng.normal(size=T)
        y = np.zeros(T)
        y[0] = mu + phi * mu + err[0]
        for t in range(1, T):
            y[t] = mu + phi * y[t - 1] + theta * err[t - 1] + err[t]
        return {"T": T, "y": y.tolist()}
    if name == "hmm_example":
        N, mu, gamma = 150, np.array([3.0, 10.0]), np.array([[0.9, 0.1], [0.2, 0.8]])
        z = [rng.integers(2)]
        for _ in range(N - 1):
            z.append(rng.choice(2, p=gamma[z[-1]]))
        return {"N": N, "y": (mu[np.array(z)] + rng.normal(size=N)).tolist()}
    if name == "normal_mixture":
        N, theta, mu = 200, 0.3, np.array([-1.0, 2.0])
        z = (rng.uniform(size=N) > theta).astype(int)
        return {"N": N, "y": (mu[z] + rng.normal(size=N)).tolist()}
    if name == "one_comp_mm_elim_abs":
        times = np.linspace(0.5, 10.0, 20)
        with jax.enable_x64(True):
            c = np.asarray(_pk_solve(jnp.asarray(times), jnp.zeros(1), (1.0, 0.5, 1.0, 2.0, 1.0)))[:, 0]
        c_hat = c * np.exp(0.1 * rng.normal(size=times.size))
        return {"t0": 0.0, "D": 2.0, "V": 1.0, "N_t": times.size, "times": times.tolist(), "C0": [0.0],
                "C_hat": c_hat.tolist()}
    if name == "lotka_volterra":
        ts, theta, z0, sigma = np.arange(1.0, 21.0), np.array([0.55, 0.028, 0.80, 0.024]), np.array([33.0, 6.2]), 0.25
        with jax.enable_x64(True):
            z = np.asarray(_lv_solve(jnp.asarray(ts), jnp.asarray(z0), jnp.asarray(theta), 1e-10, 1e-10, 100_000))
        return {"N": ts.size, "ts": ts.tolist(), "y_init": (z0 * np.exp(sigma * rng.normal(size=2))).tolist(),
                "y": (z * np.exp(sigma * rng.normal(size=z.shape))).tolist()}
    if name == "low_dim_gauss_mix":
        N, theta, mu, sigma = 1000, 0.4, np.array([-1.0, 2.0]), np.array([1.0, 0.7])
        z = (rng.uniform(size=N) > theta).astype(int)
        return {"N": N, "y": (mu[z] + sigma[z] * rng.normal(size=N)).tolist()}
    if name == "hmm_gaussian":
        trans = np.array([[0.9, 0.05, 0.05], [0.1, 0.8, 0.1], [0.05, 0.15, 0.8]])
        y = _hmm_draw(rng, 200, np.ones(3) / 3, trans, np.array([-2.0, 0.0, 3.0]), np.array([0.6, 0.8, 1.0]))
        return {"T": y.size, "K": 3, "y": y.tolist()}
    if name == "varying_slopes":
        J, n, beta, tau, rho, sigma = 10, 20, np.array([1.0, 0.5]), np.array([0.8, 0.4]), 0.3, 1.0
        cov = np.outer(tau, tau) * np.array([[1, rho], [rho, 1]])
        b = rng.multivariate_normal(beta, cov, size=J)
        g, x = np.repeat(np.arange(J), n), rng.normal(size=J * n)
        y = b[g, 0] + b[g, 1] * x + sigma * rng.normal(size=J * n)
        return {"N": J * n, "J": J, "g": (g + 1).tolist(), "x": x.tolist(), "y": y.tolist()}
    raise KeyError(name)


def _flat(name, support, shape=()):
    return numpyro.sample(name, dist.ImproperUniform(support, (), shape))


def numpyro_model(name: str, d: dict):
    """The same model written by hand in numpyro."""
    a = {k: jnp.asarray(v) for k, v in d.items()}
    if name == "garch11":
        def model():
            mu = _flat("mu", constraints.real)
            a0 = _flat("alpha0", constraints.positive)
            a1 = _flat("alpha1", constraints.unit_interval)
            # beta1 = (1 - alpha1) * raw, raw flat on (0, 1), with the log-Jacobian log(1 - alpha1) (as
            # Stan does): not _flat("beta1", interval(0, 1 - a1)), whose draws numpyro's MCMC maps back
            # through the bound of its first trace (its dynamic-support check misses ImproperUniform)
            raw = _flat("beta1_raw", constraints.unit_interval)
            b1 = numpyro.deterministic("beta1", (1.0 - a1) * raw)
            numpyro.factor("beta1_jacobian", jnp.log1p(-a1))

            def step(s, r):
                s = jnp.sqrt(a0 + a1 * r ** 2 + b1 * s ** 2)
                return s, s
            _, sigma = jax.lax.scan(step, a["sigma1"], a["y"][:-1] - mu)
            numpyro.sample("y", dist.Normal(mu, jnp.concatenate([a["sigma1"][None], sigma])), obs=a["y"])
        return model
    if name == "arma11":
        def model():
            mu = numpyro.sample("mu", dist.Normal(0, 10))
            phi = numpyro.sample("phi", dist.Normal(0, 2))
            theta = numpyro.sample("theta", dist.Normal(0, 2))
            sigma = numpyro.sample("sigma", dist.HalfCauchy(2.5))
            err1 = a["y"][0] - (mu + phi * mu)

            def step(e, yt):
                e = yt[0] - (mu + phi * yt[1] + theta * e)
                return e, e
            _, err = jax.lax.scan(step, err1, jnp.stack([a["y"][1:], a["y"][:-1]], axis=1))
            numpyro.factor("err", dist.Normal(0, sigma).log_prob(jnp.concatenate([err1[None], err])).sum())
        return model
    if name == "hmm_example":
        def model():
            t1 = numpyro.sample("theta1", dist.Dirichlet(jnp.ones(2)))
            t2 = numpyro.sample("theta2", dist.Dirichlet(jnp.ones(2)))
            mu = _flat("mu", constraints.ordered_vector, (2,))
            numpyro.factor("mu_prior", dist.Normal(jnp.array([3.0, 10.0]), 1).log_prob(mu).sum())
            log_trans = jnp.log(jnp.stack([t1, t2]))
            emit = dist.Normal(mu, 1).log_prob(a["y"][:, None])

            def forward(g, e):
                g = jax.nn.logsumexp(g[:, None] + log_trans, axis=0) + e
                return g, None
            g, _ = jax.lax.scan(forward, emit[0], emit[1:])
            numpyro.factor("y", jax.nn.logsumexp(g))
        return model
    if name == "normal_mixture":
        def model():
            theta = numpyro.sample("theta", dist.Uniform(0, 1))
            mu = _flat("mu", constraints.ordered_vector, (2,))
            numpyro.factor("mu_prior", dist.Normal(0, 10).log_prob(mu).sum())
            lp = jnp.stack([jnp.log(theta) + dist.Normal(mu[0], 1).log_prob(a["y"]),
                            jnp.log1p(-theta) + dist.Normal(mu[1], 1).log_prob(a["y"])])
            numpyro.factor("y", jax.nn.logsumexp(lp, axis=0).sum())
        return model
    if name == "one_comp_mm_elim_abs":
        def model():
            k_a, K_m, V_m, sigma = (numpyro.sample(k, dist.HalfCauchy(1)) for k in ("k_a", "K_m", "V_m", "sigma"))
            c = _pk_solve(a["times"], a["C0"], (k_a, K_m, V_m, a["D"], a["V"]))
            numpyro.sample("C_hat", dist.LogNormal(jnp.log(c[:, 0]), sigma), obs=a["C_hat"])
        return model
    if name == "lotka_volterra":
        def model():
            theta = _flat("theta", constraints.positive, (4,))
            numpyro.factor("theta_prior", dist.Normal(jnp.array([1, 0.05, 1, 0.05]),
                                                      jnp.array([0.5, 0.05, 0.5, 0.05])).log_prob(theta).sum())
            z0 = numpyro.sample("z_init", dist.LogNormal(jnp.log(10.0), 1).expand([2]))
            sigma = numpyro.sample("sigma", dist.LogNormal(-1.0, 1).expand([2]))
            z = _lv_solve(a["ts"], z0, theta)
            numpyro.sample("y_init", dist.LogNormal(jnp.log(z0), sigma), obs=a["y_init"])
            numpyro.sample("y", dist.LogNormal(jnp.log(z), sigma), obs=a["y"])
        return model
    if name == "low_dim_gauss_mix":
        def model():
            mu = _flat("mu", constraints.ordered_vector, (2,))
            numpyro.factor("mu_prior", dist.Normal(0, 2).log_prob(mu).sum())
            sigma = _flat("sigma", constraints.positive, (2,))
            numpyro.factor("sigma_prior", dist.Normal(0, 2).log_prob(sigma).sum())
            theta = numpyro.sample("theta", dist.Beta(5, 5))
            lp = dist.Normal(mu, sigma).log_prob(a["y"][:, None]) + jnp.log(jnp.stack([theta, 1 - theta]))
            numpyro.factor("y", jax.nn.logsumexp(lp, axis=1).sum())
        return model
    if name == "hmm_gaussian":
        def model():
            K = int(d["K"])
            pi1 = numpyro.sample("pi1", dist.Dirichlet(jnp.ones(K)))
            A = numpyro.sample("A", dist.Dirichlet(jnp.ones(K)).expand([K]).to_event(1))
            mu = _flat("mu", constraints.ordered_vector, (K,))
            sigma = _flat("sigma", constraints.positive, (K,))
            numpyro.factor("prior", dist.Normal(0, 5).log_prob(mu).sum() + dist.Normal(0, 2).log_prob(sigma).sum())
            emit = dist.Normal(mu, sigma).log_prob(a["y"][:, None])

            def forward(g, e):
                return jax.nn.logsumexp(g[:, None] + jnp.log(A), axis=0) + e, None
            g, _ = jax.lax.scan(forward, jnp.log(pi1) + emit[0], emit[1:])
            numpyro.factor("y", jax.nn.logsumexp(g))
        return model
    if name == "varying_slopes":
        def model():
            beta = numpyro.sample("beta", dist.Normal(0, 5).expand([2]))
            tau = _flat("tau", constraints.positive, (2,))
            numpyro.factor("tau_prior", dist.Cauchy(0, 2.5).log_prob(tau).sum())
            L = numpyro.sample("L", dist.LKJCholesky(2, 2.0))
            sigma = _flat("sigma", constraints.positive)
            numpyro.factor("sigma_prior", dist.Normal(0, 2).log_prob(sigma))
            z = numpyro.sample("z", dist.Normal(0, 1).expand([int(d["J"]), 2]))
            b = beta + z @ (tau[:, None] * L).T
            g = a["g"] - 1
            numpyro.sample("y", dist.Normal(b[g, 0] + b[g, 1] * a["x"], sigma), obs=a["y"])
        return model
    raise KeyError(name)


def reference(name: str, data: dict, latents, recompute: bool) -> dict:
    """Mean, sd, MCSE and R-hat of every latent under the numpyro model (cached)."""
    refs = json.loads(REFERENCES.read_text()) if REFERENCES.exists() else {}
    if name not in refs or recompute:
        with jax.enable_x64(True):
            start = {"init_strategy": init_to_value(values=INIT[name])} if name in INIT else {}
            mcmc = MCMC(NUTS(numpyro_model(name, data), target_accept_prob=0.95, **start), num_warmup=1000, num_samples=5000,
                        num_chains=4, chain_method="vectorized", progress_bar=False)
            mcmc.run(jax.random.key(2024))
        draws = {k: np.asarray(v) for k, v in mcmc.get_samples(group_by_chain=True).items() if k in latents}
        s = summarize(draws)
        refs[name] = {k: {stat: np.atleast_1d(s[k][stat]).tolist() for stat in ("mean", "sd", "mcse_mean", "r_hat")}
                      for k in latents}
        refs[name]["divergences"] = int(np.sum(mcmc.get_extra_fields()["diverging"]))
        # read again before writing: another run may have cached a model meanwhile
        done = {**(json.loads(REFERENCES.read_text()) if REFERENCES.exists() else {}), name: refs[name]}
        REFERENCES.write_text(json.dumps(done, indent=1))
    return refs[name]


def check(name: str, recompute: bool) -> dict:
    """gendsl's posterior against the reference: worst z of the means, sd error, R-hat."""
    data = json.loads(_source(name, ".json").read_text())
    prog = gendsl.compile(gendsl.load(_source(name, ".gen")))
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        post = prog.infer(data, key=jax.random.key(0), **({"init": INIT[name]} if name in INIT else {}),
                          **OPTIONS.get(name, {}))
    wall = time.perf_counter() - t0
    ref = reference(name, data, post.latents, recompute)
    s = post.summary()
    worst_z = worst_sd = worst_rhat = 0.0
    for k in post.latents:  # the elements that are constant (L[0, 0] = 1 of a correlation factor) left out
        keep = np.asarray(ref[k]["sd"]) > 0
        r = {stat: np.asarray(v)[keep] for stat, v in ref[k].items()}
        s[k] = {stat: np.atleast_1d(v)[keep] for stat, v in s[k].items()}
        se = np.hypot(np.atleast_1d(s[k]["mcse_mean"]), r["mcse_mean"])
        worst_z = max(worst_z, float(np.max(np.abs(np.atleast_1d(s[k]["mean"]) - r["mean"]) / se)))
        worst_sd = max(worst_sd, float(np.max(np.abs(np.atleast_1d(s[k]["sd"]) / r["sd"] - 1))))
        worst_rhat = max(worst_rhat, float(np.max(s[k]["r_hat"])))
    ok = worst_z < 4 and worst_sd < 0.1 and worst_rhat < 1.01 and int(post.divergences) == 0
    return {"model": name, "max_abs_z_mean": worst_z, "max_rel_sd_error": worst_sd, "max_r_hat": worst_rhat,
            "divergences": int(post.divergences), "reference_divergences": ref["divergences"],
            "min_ess_bulk": min(float(np.min(s[k]["ess_bulk"])) for k in post.latents),
            "wall_s": wall, "ok": ok}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    p.add_argument("--simulate", action="store_true", help="rewrite examples/stan_NAME.json from the model")
    p.add_argument("--reference", action="store_true", help="recompute the reference posteriors")
    args = p.parse_args()
    if args.simulate:
        for name in args.models:
            _source(name, ".json").write_text(json.dumps(simulate(name, np.random.default_rng(0))) + "\n")
        return
    print("| model | max abs z (means) | max sd error | max R-hat | divergences (gendsl / numpyro) | min ESS | wall s | ok |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    for name in args.models:
        r = check(name, args.reference)
        print(f"| {name} | {r['max_abs_z_mean']:.2f} | {100 * r['max_rel_sd_error']:.1f}% | {r['max_r_hat']:.4f} | "
              f"{r['divergences']} / {r['reference_divergences']} | {r['min_ess_bulk']:.0f} | {r['wall_s']:.1f} | "
              f"{'yes' if r['ok'] else 'NO'} |", flush=True)


if __name__ == "__main__":
    main()
