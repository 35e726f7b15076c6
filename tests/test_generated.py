"""``generated`` statements (posterior predictive draws and per-draw quantities outside the log
density) and ``local`` quantities (used by later statements, never stored with the draws)."""

import warnings

import arviz as az
import jax
import numpy as np
import pytest
from scipy.stats import norm

import gendsl
from gendsl.inference import log_joint
from gendsl.inference_run import write_posterior

#: a normal mean with known scale: conjugate, so the posterior predictive is known in closed form
MODEL = """
model m {{
  data N: int
  data y: real[N]
  mu ~ normal({m0}, {s0})
  y ~ normal(mu, {sigma})
{extra}
}}
"""
M0, S0, SIGMA, N = 1.0, 2.0, 1.5, 6
GENERATED = """  generated ynew ~ normal(mu, {sigma})
  generated yrep: real[N] ~ normal(mu, {sigma})
  generated shift = ynew - mu"""
Y = np.random.default_rng(0).normal(2.0, SIGMA, N)
DATA = {"N": N, "y": Y}


def program(extra: str = "", **kw) -> gendsl.Program:
    values = {"m0": M0, "s0": S0, "sigma": SIGMA, **kw}
    return gendsl.compile(gendsl.parse(MODEL.format(extra=extra.format(**values), **values)))


def run(prog, data=DATA, chains=4, samples=1000, warmup=300, key=3):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return prog.infer(data, key=jax.random.key(key), num_chains=chains, num_samples=samples, num_warmup=warmup)


@pytest.fixture(scope="module")
def predictive():
    return run(program(GENERATED))


def test_posterior_predictive_matches_the_closed_form(predictive):
    precision = 1 / S0**2 + N / SIGMA**2
    mean, var = (M0 / S0**2 + Y.sum() / SIGMA**2) / precision, 1 / precision + SIGMA**2
    draws = predictive.samples["ynew"]
    assert draws.shape == (4, 1000) and predictive.samples["yrep"].shape == (4, 1000, N)
    ess = float(predictive.summary()["ynew"]["ess_bulk"])
    assert abs(draws.mean() - mean) < 4 * np.sqrt(var / ess)
    assert abs(draws.var() - var) < 4 * var * np.sqrt(2 / ess)
    rep = predictive.samples["yrep"]  # every element is a predictive draw, independent given mu
    assert abs(rep.mean() - mean) < 4 * np.sqrt(var / ess)
    assert abs(rep.var() - var) < 4 * var * np.sqrt(2 / ess)
    within = rep - rep.mean(axis=-1, keepdims=True)  # given mu the spread is the likelihood's alone
    assert abs(within.var() * N / (N - 1) - SIGMA**2) < 4 * SIGMA**2 * np.sqrt(2 / rep.size)


def test_generated_quantities_are_computed_per_draw(predictive):
    s = predictive.samples
    np.testing.assert_array_equal(s["shift"], s["ynew"] - s["mu"])
    assert predictive.generated == ("ynew", "yrep", "shift") and predictive.predictive == ("ynew", "yrep")
    assert {"ynew", "yrep", "shift"} <= set(predictive.summary())


@pytest.fixture(scope="module")
def plain():
    return run(program())


def test_generated_statements_leave_the_posterior_unchanged(predictive, plain):
    np.testing.assert_array_equal(plain.samples["mu"], predictive.samples["mu"])
    np.testing.assert_array_equal(plain.lp, predictive.lp)
    with jax.enable_x64(True):
        joints = [log_joint(p, DATA) for p in (program(), program(GENERATED))]
        z = jax.numpy.full((1,), 0.3)
        values = [float(j.logdensity(z, a, q)) for j, a, q in joints]
    assert joints[1][0].dim == 1 and values[0] == values[1]


def test_generated_draws_have_their_own_key_stream_beside_discrete_latents():
    text = """
model m {
  data y: real[4]
  mu ~ normal(0, 1)
  z ~ bernoulli(0.5)
  y ~ normal(mu + 2 * z, 1)
%s
}
"""
    data = {"y": np.array([1.8, 0.2, 2.1, 1.6])}
    keys = jax.random.split(jax.random.key(5), 400)
    points = jax.numpy.linspace(-1.0, 2.0, 400)[:, None]
    draws = []
    for extra in ("", "  generated ynew ~ normal(mu + 2 * z, 1)"):
        joint, arrays, params = log_joint(gendsl.compile(gendsl.parse(text % extra)), data, precision="single")
        draws.append(jax.jit(jax.vmap(lambda q, k: joint.constrain(q, arrays, params, k)))(points, keys))
    plain, extra = draws
    np.testing.assert_array_equal(plain["z"], extra["z"])
    assert 0 < np.mean(plain["z"]) < 1  # the discrete draws vary, so equal draws are a real check
    noise = np.asarray(extra["ynew"] - extra["mu"] - 2 * extra["z"])
    assert abs(noise.mean()) < 4 / np.sqrt(noise.size) and abs(noise.std() - 1) < 4 / np.sqrt(2 * noise.size)


def test_local_quantities_are_not_stored_and_change_nothing(plain, tmp_path):
    local = run(program("  local err = y - mu\n  sq = sum(err * err)"))
    assert "err" not in local.samples and "err" not in local.summary()
    assert local.deterministic == ("sq",) and set(local.samples) == {"mu", "sq"}
    np.testing.assert_array_equal(plain.samples["mu"], local.samples["mu"])
    expected = ((Y - local.samples["mu"][..., None]) ** 2).sum(-1)
    np.testing.assert_allclose(local.samples["sq"], expected, rtol=1e-12)
    with np.load(write_posterior(local, tmp_path / "out") / "draws.npz") as draws:
        assert set(draws.files) == {"mu", "sq"}


def test_arviz_has_a_posterior_predictive_group(predictive, tmp_path):
    idata = predictive.to_arviz()
    assert set(idata.posterior_predictive.data_vars) == {"ynew", "yrep"}
    assert idata.posterior_predictive["yrep"].dims == ("chain", "draw", "yrep_dim_0")
    assert "shift" in idata.posterior.data_vars and "ynew" not in idata.posterior.data_vars
    path = tmp_path / "posterior.nc"
    path.write_bytes(predictive.to_netcdf_bytes())
    back = az.from_netcdf(path)
    np.testing.assert_array_equal(back.posterior_predictive["ynew"].values, predictive.samples["ynew"])
    with np.load(write_posterior(predictive, tmp_path / "out") / "draws.npz") as draws:
        assert {"ynew", "yrep", "shift"} <= set(draws.files)


def test_describe_names_local_and_generated_nodes():
    rows = {line.split()[0]: line.split()[1] for line in
            program(GENERATED + "\n  local e = y - mu").describe().splitlines()[3:] if line.strip()}
    assert rows["ynew"] == rows["shift"] == "generated" and rows["e"] == "local" and rows["mu"] == "latent"


def test_program_sample_log_prob_and_fit_treat_local_and_generated_as_the_language_says():
    prog = program(GENERATED + "\n  local e = y - mu")
    params = prog.init(jax.random.key(0), {"N": N})
    draws = prog.sample(params, jax.random.key(1), 4000, data={"N": N})
    assert "e" not in draws and {"mu", "y", "ynew", "yrep", "shift"} <= set(draws)
    sd = np.sqrt(S0**2 + SIGMA**2)  # ynew drawn from the prior predictive
    assert abs(draws["ynew"].mean() - M0) < 4 * sd / np.sqrt(4000)
    np.testing.assert_allclose(draws["shift"], draws["ynew"] - draws["mu"], rtol=1e-6)
    values = {"N": N, "y": np.stack([Y, Y + 1]), "mu": np.array([0.5, 2.0])}
    exact = [norm.logpdf(mu, M0, S0) + norm.logpdf(y, mu, SIGMA).sum() for mu, y in zip(values["mu"], values["y"])]
    np.testing.assert_allclose(prog.log_prob(params, values), exact, rtol=1e-5)  # no generated value needed
    np.testing.assert_allclose(prog.log_prob(params, {**values, "ynew": np.zeros(2)}), exact, rtol=1e-5)
    assert prog.log_prob_kind == "exact" and "nll" not in prog.describe().splitlines()[-3]
    fitted = prog.fit({"N": N, **{k: values[k] for k in ("y", "mu")}}, steps=2, batch_size=2, progress=False)
    assert set(fitted.params) >= {"mu", "y"}
