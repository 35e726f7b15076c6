"""Energies sampled by tempered SMC (``sampler=smc(...)``): mode weights of a well-separated mixture
(where one MALA chain is stuck in a mode), log Z against closed forms within its standard error,
the base as the reference, the price in the plan, and the refusals."""

from __future__ import annotations

import jax
import numpy as np
import pytest

import gendsl
from gendsl.errors import GenSemanticError
from gendsl.fit_metrics import evaluate_fit

PARTICLES = 1000
#: 1.5 N((-4, 0), I) + 3.5 N((4, 0), I), unnormalised: mode weights 0.3 / 0.7 (8 sd apart), Z = 5 * 2 pi
MIXTURE = ("-logsumexp([log(1.5) - ((x[0] + 4)^2 + x[1]^2) / 2, log(3.5) - ((x[0] - 4)^2 + x[1]^2) / 2])")
WEIGHT, LOG_Z = 0.7, np.log(5 * 2 * np.pi)


def compile_energy(rhs: str, var: str = "x: real[2]") -> gendsl.Program:
    return gendsl.compile(gendsl.parse(f"model m {{\n  {var} ~ {rhs}\n}}\n"))


@pytest.fixture(scope="module")
def mixture():
    return compile_energy(f"energy({MIXTURE}, sampler=smc(particles={PARTICLES}, mcmc_steps=10))")


def test_smc_recovers_the_mode_weights_where_one_mala_chain_does_not(mixture):
    """The right mode's share within 4 binomial sds (over the particles, which carry the weights)."""
    draws, info = mixture.sample_with_info({}, jax.random.key(0), 2000)
    share = float(np.mean(np.asarray(draws["x"])[:, 0] > 0))
    assert abs(share - WEIGHT) < 4 * np.sqrt(WEIGHT * (1 - WEIGHT) / PARTICLES)
    assert int(info["x"]["tempering_steps"]) >= 2 and np.isfinite(float(info["x"]["log_z"]))

    mala = compile_energy(f"energy({MIXTURE}, sampler=mala(warmup=200, steps=1000, chains=1))")
    stuck = float(np.mean(np.asarray(mala.sample({}, jax.random.key(0), 1000)["x"])[:, 0] > 0))
    assert stuck in (0.0, 1.0)


def test_log_z_of_an_unnormalised_mixture_is_within_four_standard_errors(mixture):
    log_z, se = mixture.plan.node("x").mechanism.log_normaliser({}, jax.random.key(1), repeats=8)
    assert 0 < se < 0.2
    assert abs(log_z - LOG_Z) < 4 * se


def test_the_base_is_the_reference():
    """p(x) proportional to N(x; 0, 2^2) exp(-x^2 / 2) has Z = 1 / sqrt(5) relative to the normalised base."""
    prog = compile_energy("energy(x^2 / 2, base=normal(0, 2), sampler=smc(particles=500, mcmc_steps=5))", "x: real")
    assert "from base" in prog.describe()
    node = prog.plan.node("x").mechanism
    log_z, se = node.log_normaliser({}, jax.random.key(2), repeats=4)
    assert abs(log_z + 0.5 * np.log(5)) < 4 * max(se, 1e-3)


def test_smc_is_priced_per_particle():
    plan = compile_energy("energy(x^2 / 2, sampler=smc(particles=10, mcmc_steps=7))", "x: real").describe()
    assert "smc(particles=10, mcmc_steps=7" in plan and " 100" in plan


def test_smc_refuses_a_conditional_energy_and_log_z_needs_smc():
    text = "model m {\n  y: real ~ normal(0, 1)\n  x: real ~ energy((x - y)^2, sampler=smc())\n}\n"
    with pytest.raises(GenSemanticError, match="one population"):
        gendsl.compile(gendsl.parse(text)).plan
    node = compile_energy("energy(x^2 / 2, sampler=nuts())", "x: real").plan.node("x").mechanism
    with pytest.raises(GenSemanticError, match="smc"):
        node.log_normaliser({}, jax.random.key(0))


def test_a_network_energy_starts_from_a_gaussian_fitted_to_its_data(tmp_path):
    """The reference's moments are gathered during fit, kept with the parameters, and log Z reaches the metrics."""
    prog = compile_energy("energy(mlp(hidden=[8]), sampler=smc(particles=64, mcmc_steps=2))", "data x: real[2]\n  x")
    rng = np.random.default_rng(0)
    x = np.stack([3 + 2 * rng.standard_normal(512), -1 + 0.5 * rng.standard_normal(512)], 1).astype(np.float32)
    fit = prog.fit({"x": x}, steps=4, key=jax.random.key(0), batch_size=128)
    reference = fit.params["x"]["reference"]
    np.testing.assert_allclose(reference["loc"], x.mean(0), atol=0.3)
    np.testing.assert_allclose(reference["scale"], x.std(0), rtol=0.2)
    loaded = prog.load_params(prog.save(fit.params, tmp_path / "params"))
    metrics = evaluate_fit(prog, loaded, {"x": x[:32]}, jax.random.key(1))
    assert metrics["_draws"]["x"].shape == (32, 2) and np.isfinite(metrics["_draws"]["x"]).all()
    assert set(metrics["log_z"]["x"]) == {"log_z", "se", "repeats"} and np.isfinite(metrics["log_z"]["x"]["log_z"])
