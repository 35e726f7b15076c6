"""ArviZ-native posterior output: Stan's sample statistics, pointwise log-likelihoods against closed
forms, the netCDF file ArviZ reads back, E-BFMI, and PSIS-LOO against exact leave-one-out."""

import warnings

import arviz as az
import jax
import numpy as np
import pytest
from scipy import stats

import gendsl
from gendsl.inference_run import write_posterior
from gendsl.numerics.diagnostics import e_bfmi

SCHOOLS = {"J": 8, "y": [28.0, 8.0, -3.0, 7.0, -1.0, 1.0, 18.0, 12.0],
           "sigma": [15.0, 10.0, 16.0, 11.0, 9.0, 11.0, 10.0, 18.0]}

SCHOOLS_MODEL = """
model schools {
  data J: int
  data sigma: real[J]
  data y: real[J]
  mu ~ normal(0, 5)
  tau ~ half_cauchy(5)
  theta_raw: real[J] ~ normal(0, 1)
  theta = mu + tau * theta_raw
  y ~ normal(theta, sigma)
}
"""

#: y_i ~ normal(m, 1) with m ~ normal(0, 10): every leave-one-out predictive density is closed form
NORMAL_MEAN = """
model normal_mean {
  data N: int
  data y: real[N]
  m ~ normal(0, 10)
  y ~ normal(m, 1)
}
"""


def run(text, data, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return gendsl.compile(gendsl.parse(text)).infer(data, key=jax.random.key(3), **kw)


@pytest.fixture(scope="module")
def schools():
    return run(SCHOOLS_MODEL, SCHOOLS, num_chains=4, num_samples=400, num_warmup=400)


def test_pointwise_log_likelihood_is_the_closed_form_at_every_draw(schools):
    theta = schools.samples["theta"]
    expected = stats.norm.logpdf(np.asarray(SCHOOLS["y"]), theta, np.asarray(SCHOOLS["sigma"]))
    got = schools.log_likelihood()["y"]
    assert got.shape == (4, 400, 8)
    np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-9)


def test_energy_and_lp_are_stans(schools):
    # a NUTS state's Hamiltonian is its potential -lp plus a kinetic energy >= 0
    assert schools.energy.shape == schools.lp.shape == (4, 400)
    assert np.all(schools.energy + schools.lp >= -1e-9)
    # lp__ is the log joint in unconstrained space: the log-likelihood and the priors, with tau's Jacobian
    d = schools.samples
    prior = (stats.norm.logpdf(d["mu"], 0, 5) + stats.halfcauchy.logpdf(d["tau"], scale=5) + np.log(d["tau"])
             + stats.norm.logpdf(d["theta_raw"]).sum(-1))
    np.testing.assert_allclose(schools.lp, prior + schools.log_likelihood()["y"].sum(-1), rtol=1e-8, atol=1e-8)


def test_e_bfmi_closed_form_and_on_a_gaussian(schools):
    rng = np.random.default_rng(0)
    iid = rng.normal(size=(2, 20000))  # independent energies: sum(diff^2) / sum(dev^2) -> 2
    np.testing.assert_allclose(e_bfmi(iid), 2.0, atol=0.05)
    walk = np.cumsum(rng.normal(size=(1, 20000)), axis=1)  # a random walk explores energy badly
    assert e_bfmi(walk)[0] < 0.01
    assert np.all((schools.e_bfmi > 0.3) & (schools.e_bfmi < 2.5))
    assert "E-BFMI" in schools.summary_table()
    assert len(schools.sampler_stats()["e_bfmi"]) == 4


def test_netcdf_file_reads_back_in_arviz(schools, tmp_path):
    write_posterior(schools, tmp_path)
    idata = az.from_netcdf(tmp_path / "posterior.nc")
    assert set(idata.groups()) == {"posterior", "sample_stats", "log_likelihood", "observed_data", "constant_data"}
    np.testing.assert_array_equal(idata.posterior["theta"].values, schools.samples["theta"])
    assert idata.posterior["theta"].dims == ("chain", "draw", "theta_dim_0")
    assert idata.sample_stats["diverging"].dtype == bool
    np.testing.assert_array_equal(idata.sample_stats["diverging"].values, schools.diverging)
    np.testing.assert_array_equal(idata.sample_stats["energy"].values, schools.energy)
    np.testing.assert_array_equal(idata.observed_data["y"].values, SCHOOLS["y"])
    np.testing.assert_array_equal(idata.constant_data["sigma"].values, SCHOOLS["sigma"])
    summary = az.summary(idata, var_names=["mu"])
    assert abs(summary.loc["mu", "mean"] - schools.summary()["mu"]["mean"]) < 1e-2


def test_psis_loo_matches_exact_leave_one_out():
    rng = np.random.default_rng(1)
    y = rng.normal(1.5, 1.0, size=25)
    post = run(NORMAL_MEAN, {"N": 25, "y": y.tolist()}, num_chains=4, num_samples=1000, num_warmup=500)
    exact = 0.0
    for i in range(25):  # conjugate posterior of m without y_i, then its predictive density at y_i
        rest = np.delete(y, i)
        precision = 1 / 100 + len(rest)
        mean = rest.sum() / precision
        exact += stats.norm.logpdf(y[i], mean, np.sqrt(1 + 1 / precision))
    loo = az.loo(post.to_arviz())
    # PSIS-LOO's Monte-Carlo error on 4000 draws of a well-behaved posterior is far below 0.1 nats
    assert abs(loo.elpd_loo - exact) < 0.1
    assert np.all(loo.pareto_k < 0.7)


def test_a_variable_named_like_a_dimension_is_kept():
    post = run("model m {\n  draw ~ normal(0, 1)\n}\n", {}, num_chains=2, num_samples=50, num_warmup=50)
    assert post.to_arviz().posterior["draw_"].shape == (2, 50)
