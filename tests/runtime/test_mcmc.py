"""The blackjax bridge and its warm-up: every kernel against targets with known moments (tolerances
from Monte-Carlo standard errors), the adaptation, the independent-chain and short-run drivers,
trace counts."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.linalg import solve_discrete_lyapunov

from gendsl.errors import GenDataError
from gendsl.numerics import adaptation, kernels, mcmc
from gendsl.numerics.diagnostics import summarize

MEAN = np.array([1.0, -2.0])
COV = np.array([[1.0, 1.8], [1.8, 4.0]])  # correlation 0.9, scales 1 and 2
PRECISION = np.linalg.inv(COV)


def gaussian(z):
    d = z - MEAN
    return -0.5 * d @ PRECISION @ d


def banana(z):
    """x0 ~ N(0, 4), x1 | x0 ~ N(x0^2 / 4, 1)."""
    return -(z[0] ** 2 / 8 + (z[1] - z[0] ** 2 / 4) ** 2 / 2)


def zscore(values: np.ndarray, truth: float) -> float:
    """(mean - truth) / Monte-Carlo standard error, for draws of shape (chains, draws)."""
    s = summarize({"f": values})["f"]
    return (s["mean"] - truth) / s["mcse_mean"]


def check_gaussian(draws: np.ndarray, mean: np.ndarray, cov: np.ndarray) -> None:
    """Means, variances and the covariance of (chains, draws, 2) draws, each within 4.5 MC standard errors."""
    for i in range(2):
        assert abs(zscore(draws[..., i], mean[i])) < 4.5, (i, draws[..., i].mean())
        assert abs(zscore((draws[..., i] - mean[i]) ** 2, cov[i, i])) < 4.5, (i, draws[..., i].var())
    cross = (draws[..., 0] - mean[0]) * (draws[..., 1] - mean[1])
    assert abs(zscore(cross, cov[0, 1])) < 4.5, cross.mean()


def run(kernel, target, num_warmup, num_samples, thin=1, chains=4, seed=0, **options):
    config = kernels.kernel_config(kernel, **options)
    with jax.enable_x64(True):
        starts = jax.random.uniform(jax.random.key(seed), (chains, 2), jnp.float64, -2.0, 2.0)
        fn = jax.jit(lambda k, z: mcmc.run_chains(config, target, k, z, num_warmup, num_samples, thin))
        draws, stats, tuning = fn(jax.random.key(seed + 1), starts)
        return np.asarray(draws), jax.tree_util.tree_map(np.asarray, stats), jax.tree_util.tree_map(np.asarray, tuning)


def test_nuts_correlated_gaussian_and_adaptation():
    draws, stats, tuning = run("nuts", gaussian, 500, 1000)
    assert draws.shape == (4, 1000, 2) and draws.dtype == np.float64
    check_gaussian(draws, MEAN, COV)
    assert stats.is_divergent.sum() == 0
    assert abs(stats.acceptance_rate.mean() - 0.95) < 0.04
    assert tuning.inverse_mass_matrix.shape == (4, 2, 2)  # dense: 2 <= DENSE_MAX_DIM
    # the adapted inverse mass matrix estimates the covariance (Stan's regularisation shrinks it a little)
    np.testing.assert_allclose(tuning.inverse_mass_matrix.mean(0), COV, rtol=0.35, atol=0.3)
    assert np.all(stats.tree_depth >= 1) and np.all(stats.num_steps >= 1)


def test_nuts_banana_by_its_transform():
    draws, stats, _ = run("nuts", banana, 500, 1500)
    x0, x1 = draws[..., 0], draws[..., 1]
    y = x1 - x0 ** 2 / 4  # N(0, 1), independent of x0
    assert abs(zscore(x0, 0.0)) < 4.5
    assert abs(zscore(x0 ** 2, 4.0)) < 4.5
    assert abs(zscore(x1, 1.0)) < 4.5
    assert abs(zscore(y, 0.0)) < 4.5
    assert abs(zscore(y ** 2, 1.0)) < 4.5
    assert abs(zscore(x0 * y, 0.0)) < 4.5
    assert stats.is_divergent.mean() < 0.005


def test_hmc_diagonal_mass():
    draws, stats, tuning = run("hmc", gaussian, 500, 1000, mass="diagonal", num_integration_steps=8)
    check_gaussian(draws, MEAN, COV)
    assert tuning.inverse_mass_matrix.shape == (4, 2)
    np.testing.assert_allclose(tuning.inverse_mass_matrix.mean(0), np.diag(COV), rtol=0.35)
    assert np.all(stats.num_steps == 8) and np.all(stats.tree_depth == 0)


def test_mala_adapts_its_step_size():
    draws, stats, tuning = run("mala", gaussian, 1000, 2000, thin=5, step_size=1e-3)
    check_gaussian(draws, MEAN, COV)
    assert abs(stats.acceptance_rate.mean() - 0.574) < 0.1
    assert np.all(tuning.step_size > 1e-2)  # grown from 1e-3 by dual averaging


def test_unadjusted_langevin_matches_its_own_stationary_law():
    """ULA with step h on a Gaussian is the AR(1) x' = (I - h P) x + sqrt(2h) xi: its stationary
    covariance solves C = A C A^T + 2h I (biased away from COV, exactly)."""
    h = 0.15
    draws, stats, _ = run("langevin", gaussian, 500, 4000, thin=2, step_size=h)
    a = np.eye(2) - h * PRECISION
    stationary = solve_discrete_lyapunov(a, 2 * h * np.eye(2))
    assert stationary[0, 0] > 1.1 * COV[0, 0]  # a bias large enough to matter
    check_gaussian(draws, MEAN, stationary)
    assert np.all(stats.acceptance_rate == 1.0)


def test_final_positions_and_short_run():
    """One chain per draw: each final state is an independent draw."""
    config = kernels.kernel_config("mala", step_size=0.1)
    target = lambda z: -0.5 * jnp.sum((z - 3.0) ** 2)  # noqa: E731
    with jax.enable_x64(True):
        starts = jnp.zeros((2000, 1))
        final = np.asarray(jax.jit(lambda k, z: mcmc.final_positions(config, target, k, z, 100, 100))(jax.random.key(0), starts))
        short = np.asarray(mcmc.short_run(config, target, jax.random.key(1), starts, 3))
    assert final.shape == (2000, 1)
    assert abs(final.mean() - 3.0) < 4.5 / np.sqrt(2000)
    assert abs(final.var() - 1.0) < 4.5 * np.sqrt(2 / 2000)
    assert 0.1 < short.mean() < 2.5  # three fixed-size steps: on the way, not there


@pytest.mark.parametrize("mass", list(adaptation.METRICS))
def test_logdensity_is_traced_a_fixed_number_of_times(mass):
    """Warm-up and sampling share ONE scan: the number of traces of the target (the initial state,
    the kernel's trajectory code) does not grow with the number of transitions or warm-up phases,
    whichever mass-matrix estimator warm-up runs."""
    count = {"n": 0}

    def target(z):
        count["n"] += 1
        return gaussian(z)

    counts = []
    for n_warmup, n_samples in ((0, 10), (50, 50), (300, 500)):
        count["n"] = 0
        config = kernels.kernel_config("nuts", mass=mass)
        with jax.enable_x64(True):
            jax.jit(lambda k, z: mcmc.run_chains(config, target, k, z, n_warmup, n_samples)).lower(
                jax.random.key(0), jnp.zeros((2, 2)))
        counts.append(count["n"])
    assert counts[0] == counts[1] == counts[2] <= 4


def test_scaled_welford_core_preconditions_badly_scaled_posteriors():
    """A slope on an unscaled covariate: variances 1e-6 and 1e2, correlation -0.999. Shrinking
    towards 1e-3 * diag(S) keeps the preconditioned covariance near the identity; Stan's absolute
    1e-3 * I does not (the narrow direction is erased)."""
    sd = np.array([1e-3, 10.0])
    cov = np.array([[1.0, -0.999], [-0.999, 1.0]]) * np.outer(sd, sd)
    draws = np.random.default_rng(0).multivariate_normal(np.zeros(2), cov, size=500)
    with jax.enable_x64(True):
        core = adaptation.scaled_welford_core(dense=True)
        state = core.init(2)
        for x in draws:
            state = core.update(state, jnp.asarray(x))
        imm = np.asarray(core.final(state).inverse_mass_matrix)
    sample = np.cov(draws.T)
    w = 500 / 505
    np.testing.assert_allclose(imm, w * sample + (1 - w) * 1e-3 * np.diag(np.diag(sample)), rtol=1e-10)
    stan = w * sample + (1 - w) * 1e-3 * np.eye(2)

    def condition(metric):
        chol = np.linalg.cholesky(metric)
        return np.linalg.cond(np.linalg.solve(chol, np.linalg.solve(chol, cov).T))

    assert condition(imm) < 1.5 < 100 < condition(stan)


def test_kernel_config_choices_and_errors():
    assert kernels.kernel_config("auto").name == "nuts"
    assert kernels.kernel_config("nuts").metric(kernels.DENSE_MAX_DIM) == "dense"
    assert kernels.kernel_config("nuts").metric(kernels.DENSE_MAX_DIM + 1) == "lowrank"
    assert kernels.kernel_config("nuts").metric(adaptation.LOWRANK_MAX_DIM + 1) == "diagonal"
    assert kernels.kernel_config("nuts", mass="dense").metric(500) == "dense"
    assert kernels.kernel_config("nuts", mass="diagonal").metric(2) == "diagonal"
    assert kernels.kernel_config("mala").target_accept == pytest.approx(0.574)
    with pytest.raises(GenDataError, match="did you mean 'nuts'"):
        kernels.kernel_config("nut")
    with pytest.raises(GenDataError, match="did you mean 'target_accept'"):
        kernels.kernel_config("nuts", target_acept=0.9)
    with pytest.raises(GenDataError, match="target_accept"):
        kernels.kernel_config("nuts", target_accept=1.5)
    with pytest.raises(GenDataError, match="mass"):
        kernels.kernel_config("nuts", mass="full")


def test_a_new_kernel_is_one_table_entry(monkeypatch):
    """A random-walk Metropolis kernel (blackjax's) added as one entry of the table: the driver,
    the step-size warm-up and ``describe`` use it with no other change, and it samples N(1, 2^2)."""
    import blackjax

    from gendsl.core.catalog import Table
    from gendsl.core.signatures import Param, Signature

    def rwm_step(config, logdensity_fn):
        def step(key, state, tuning):
            kernel = blackjax.additive_step_random_walk.build_kernel()
            proposal = blackjax.mcmc.random_walk.normal(tuning.step_size * jnp.ones_like(state.position))
            new, info = kernel(key, blackjax.mcmc.random_walk.RWState(state.position, state.logdensity),
                               logdensity_fn, proposal)
            grad = jax.grad(logdensity_fn)(new.position)
            return kernels.State(new.position, new.logdensity, grad), kernels.ChainStats(
                jnp.zeros((), bool), jnp.zeros((), jnp.int32), jnp.ones((), jnp.int32), info.acceptance_rate)
        return step

    entry = kernels.Kernel(Signature("rwm", "kernel", (Param("step_size", "number", 1.0),)), rwm_step, 0.3, 1.0,
                        False, True, lambda c: 0, lambda c: f"rwm(step_size={c.step_size:g})")
    monkeypatch.setattr(kernels, "KERNELS", Table("MCMC kernel", {**kernels.KERNELS, "rwm": entry}))
    config = kernels.kernel_config("rwm")
    assert config.describe() == "rwm(step_size=1)" and config.target_accept == 0.3

    def target(z):
        return -0.5 * jnp.sum(((z - 1.0) / 2.0) ** 2)

    draws, stats, tuning = jax.jit(lambda k, z: mcmc.run_chains(config, target, k, z, 500, 4000))(
        jax.random.key(0), jnp.zeros((4, 1)))
    x = np.asarray(draws).reshape(-1)
    se = 2.0 / np.sqrt(len(x) / 30)  # draws are correlated: about 30 per effective draw, generously
    assert abs(x.mean() - 1.0) < 4 * se and abs(x.std() - 2.0) < 0.3
    assert 0.15 < float(np.mean(stats.acceptance_rate)) < 0.5  # the warm-up tuned it towards 0.3
