"""evolve: processes, losses, samplers and likelihood against closed forms; the mechanism end to end.

For Gaussian data N(mu, S) every process has an analytic score: x_t ~ N(alpha mu, alpha^2 S +
sigma^2 I). It is plugged into the samplers and the likelihood in place of a network, so these
tests check the numerics alone; tolerances come from Monte Carlo standard errors.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.scipy.stats import multivariate_normal as mvn

import gendsl
from gendsl.errors import GenSemanticError
from gendsl.mechanisms.evolve import likelihood, losses, samplers, scaled_samplers
from gendsl.mechanisms.evolve.processes import EDM, VE, VP, FlowMatching, FromScore, FromVelocity, SubVP

MU = jnp.array([0.3, -0.2])
COV = jnp.array([[1.0, 0.6], [0.6, 0.9]])
PROCESSES = {"vp": VP(), "subvp": SubVP(), "ve": VE(), "flow_matching": FlowMatching()}


def gaussian_model(process, mu=MU, cov=COV):
    """The exact (x0_hat, eps_hat) of N(mu, cov) data: from its score, or its velocity when alpha(1) = 0."""
    eye = jnp.eye(mu.shape[0])

    def posterior(t, x):
        alpha, sigma = process.alpha_sigma(t)
        r = jnp.linalg.solve(alpha**2 * cov + sigma**2 * eye, x - alpha * mu)
        return mu + alpha * cov @ r, sigma * r  # E[x0 | x_t], E[eps | x_t]

    if isinstance(process, FlowMatching):
        def vel(t, x, c):
            (da, ds), (x0, eps) = process.rates(t), posterior(t, x)
            return da * x0 + ds * eps

        return FromVelocity(vel, process)

    def score(t, x, c):
        alpha, sigma = process.alpha_sigma(t)
        return -jnp.linalg.solve(alpha**2 * cov + sigma**2 * eye, x - alpha * mu)

    return FromScore(score, process)


def exact_prior(process, key, n, mu=MU, cov=COV):
    """Draws of the exact marginal at t = 1 (the sampler's transport is then tested alone)."""
    alpha, sigma = process.alpha_sigma(jnp.float32(1.0))
    return jax.random.multivariate_normal(key, alpha * mu, alpha**2 * cov + sigma**2 * jnp.eye(2), (n,))


def assert_gaussian(draws, mu=MU, cov=COV, z=4.5):
    """Sample mean and covariance within ``z`` standard errors of ``mu`` and ``cov``."""
    draws = np.asarray(draws, np.float64)
    n = draws.shape[0]
    mu, cov = np.asarray(mu), np.asarray(cov)
    se_mean = np.sqrt(np.diag(cov) / n)
    assert np.all(np.abs(draws.mean(0) - mu) < z * se_mean), (draws.mean(0), mu)
    se_cov = np.sqrt((np.outer(np.diag(cov), np.diag(cov)) + cov**2) / n)
    assert np.all(np.abs(np.cov(draws.T) - cov) < z * se_cov), (np.cov(draws.T), cov)


# -- processes ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(PROCESSES))
def test_process_rates_and_grid(name):
    process = PROCESSES[name]
    t = jnp.float32(0.37)
    h = 1e-3
    numeric = [(a - b) / (2 * h) for a, b in zip(process.alpha_sigma(t + h), process.alpha_sigma(t - h))]
    np.testing.assert_allclose(process.rates(t), numeric, rtol=2e-3)
    if name != "flow_matching":  # g^2 = 2 sigma sigma' - 2 (alpha'/alpha) sigma^2 (variance of the forward SDE)
        (alpha, sigma), (da, ds) = process.alpha_sigma(t), process.rates(t)
        np.testing.assert_allclose(process.diffusion2(t), 2 * sigma * ds - 2 * da / alpha * sigma**2, rtol=1e-4)
    grid = process.time_grid(10)
    assert grid.shape == (11,) and grid[0] == 1.0 and grid[-1] == process.t_min and np.all(np.diff(grid) < 0)
    lam = process.log_snr(jnp.float32(0.2))
    assert abs(float(process.t_of_log_snr(lam)) - 0.2) < 1e-5


# -- samplers with the exact score ----------------------------------------------------------------


@pytest.mark.parametrize("name", ["vp", "ve", "flow_matching"])
def test_ode_sampling_reproduces_gaussian(name):
    process = PROCESSES[name]
    y1 = exact_prior(process, jax.random.key(0), 4000)
    draws, nfe = jax.jit(lambda y: samplers.solve_ode(gaussian_model(process), process, y, steps=24))(y1)
    assert int(nfe) == 48
    assert_gaussian(draws)


def test_adaptive_ode_counts_evaluations():
    process = PROCESSES["subvp"]
    count = {"n": 0}

    class Counted(type(gaussian_model(process))):
        def __call__(self, t, x, c=None):
            jax.debug.callback(lambda: count.__setitem__("n", count["n"] + 1))
            return super().__call__(t, x, c)

    model = Counted(gaussian_model(process).score_fn, process)
    y1 = exact_prior(process, jax.random.key(1), 8)
    for steps, solver in [("adaptive", "heun"), (5, "heun")]:  # adaptive is Tsit5: 1 + 6 per step
        count["n"] = 0
        _, nfe = samplers.solve_ode(model, process, y1, steps=steps, solver=solver, rtol=1e-4)
        jax.effects_barrier()
        assert count["n"] == int(nfe), (steps, solver, count["n"], int(nfe))  # one batched call per evaluation
    assert int(nfe) == 2 * 5


@pytest.mark.parametrize("name,corrector", [("vp", 0), ("flow_matching", 1)])
def test_sde_sampling_reproduces_gaussian(name, corrector):
    process = PROCESSES[name]
    y1 = exact_prior(process, jax.random.key(2), 4000)
    draws, nfe = jax.jit(lambda y: samplers.solve_sde(gaussian_model(process), process, y, jax.random.key(3),
                                                      steps=200, corrector=corrector))(y1)
    assert int(nfe) == 200 * (1 + corrector) + 1
    assert_gaussian(draws)


# -- likelihood ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["vp", "ve", "flow_matching"])
def test_probability_flow_log_density_is_exact(name):
    """Within 1e-3 nats per dimension of the true log-density.

    The prior N(0, alpha(1)^2 + sigma(1)^2) stands for p_1, exact for white data; for correlated
    data p_1 differs from it by O(alpha(1)^2) (vp) or O(1 / sigma_max^2) (ve), so ve is run with
    sigma_max = 100 here."""
    process = VE(sigma_max=100.0) if name == "ve" else PROCESSES[name]
    mu, cov = jnp.zeros(2), jnp.array([[1.0, 0.7], [0.7, 1.3]])
    x = jax.random.multivariate_normal(jax.random.key(4), mu, cov, (64,))
    lp = jax.jit(lambda x: likelihood.log_prob(gaussian_model(process, mu, cov), process, x))(x)
    np.testing.assert_array_less(np.abs(lp - mvn.logpdf(x, mu, cov)), 2 * 1e-3)


def test_hutchinson_trace_agrees_with_exact():
    process = PROCESSES["vp"]
    model = gaussian_model(process)
    x = jax.random.multivariate_normal(jax.random.key(5), MU, COV, (3,))
    exact = likelihood.log_prob(model, process, x)
    probes = 48  # each point repeated, every row with its own Rademacher probe
    rows = jnp.repeat(x, probes, axis=0)
    estimate = likelihood.log_prob(model, process, rows, trace="hutchinson", key=jax.random.key(6)).reshape(3, probes)
    mean, se = estimate.mean(1), estimate.std(1) / math.sqrt(probes)
    assert np.all(se > 0)
    np.testing.assert_array_less(np.abs(mean - exact), 4 * se + 1e-4)


# -- losses ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name,weighting", [("vp", "standard"), ("ve", "likelihood"), ("flow_matching", None)])
def test_loss_is_minimised_by_the_true_score(name, weighting):
    """The loss at the exact model is lower than at a perturbed one, and its derivative along the
    perturbation is zero within Monte Carlo error (common random numbers)."""
    process = PROCESSES[name]
    base = gaussian_model(process)
    direction = jnp.array([[0.3, -0.5], [0.2, 0.4]])

    def model(delta):
        shifted = lambda t, x, c, f=(base.score_fn if hasattr(base, "score_fn") else base.velocity_fn): (  # noqa: E731
            f(t, x, c) + delta * jnp.tanh(direction @ x))
        return type(base)(shifted, process)

    def per_key(delta, key):  # fresh data for every key: the population loss is what the score minimises
        key, k_data = jax.random.split(key)
        x0 = jax.random.multivariate_normal(k_data, MU, COV, (2000,))
        if weighting is None:
            return losses.velocity_loss(model(delta), process, x0, None, key)
        return losses.denoising_loss(model(delta), process, x0, None, key, weighting=weighting)

    @jax.jit
    def check(keys):
        at = lambda d: jax.vmap(lambda k: per_key(d, k))(keys)  # noqa: E731
        grad = jax.vmap(jax.grad(per_key), (None, 0))
        return at(0.0), at(0.3), grad(0.0, keys), grad(0.3, keys)

    exact, perturbed, grads, grads_off = check(jax.random.split(jax.random.key(8), 16))
    se = lambda g: float(g.std()) / math.sqrt(len(g))  # noqa: E731
    assert np.all(exact < perturbed)
    assert abs(float(grads.mean())) < 4 * se(grads) + 1e-3
    assert float(grads_off.mean()) > 4 * se(grads_off)  # the check can fail: off the optimum it is not flat


def test_time_sampling_is_low_variance():
    u = losses.uniform_times(jax.random.key(9), 1024, "stratified")
    assert np.array_equal(np.floor(np.sort(np.asarray(u, np.float64)) * 1024), np.arange(1024))
    a = losses.uniform_times(jax.random.key(9), 1024, "antithetic")
    np.testing.assert_allclose(np.sort(np.asarray(a[:512])), np.sort(1 - np.asarray(a[512:])), atol=1e-6)


def test_ot_pairing_is_near_the_optimal_assignment():
    from scipy.optimize import linear_sum_assignment

    x0 = jax.random.normal(jax.random.key(10), (128, 2)) * jnp.array([2.0, 0.5]) + 1.0
    eps = jax.random.normal(jax.random.key(11), (128, 2))
    paired = losses.ot_pairing(jax.random.key(12), x0, eps)
    cost = np.sum((np.asarray(x0)[:, None] - np.asarray(eps)[None]) ** 2, -1)
    rows, cols = linear_sum_assignment(cost)
    optimal, independent = cost[rows, cols].sum(), np.trace(cost)
    assert float(jnp.sum((x0 - paired) ** 2)) < optimal + 0.1 * (independent - optimal)


# -- the mechanism in a program --------------------------------------------------------------------

MOONS = """model m {{
  data x: real[2]
  x ~ evolve({process}, net=mlp(hidden=[64, 64]), sampler={sampler})
}}"""


def _energy_distance(a, b):
    from scipy.spatial.distance import cdist

    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return 2 * cdist(a, b).mean() - cdist(a, a).mean() - cdist(b, b).mean()


def test_describe_and_cost():
    for sampler, cost in [("ode(steps=32)", 64), ("ode(steps=10, solver=\"euler\")", 10),
                          ("sde(steps=100, corrector=1)", 201)]:
        prog = gendsl.compile(gendsl.parse(MOONS.format(process="vp()", sampler=sampler)))
        row = prog.lowered().stochastic[0].mechanism.describe()
        assert row["cost"] == str(cost) and row["likelihood"] == "estimate", row
    prog = gendsl.compile(gendsl.parse(MOONS.format(process="ve()", sampler='ode(steps="adaptive")')))
    node = prog.lowered().stochastic[0]
    before = node.mechanism.cost()
    _, info = prog.sample_with_info(prog.init(jax.random.key(0)), jax.random.key(1), 16)
    assert int(info[node.name]["nfe"]) > 0  # measured by the solve, returned as a value
    assert node.mechanism.cost() == before  # and nothing written back into the node


@pytest.mark.parametrize("extra,message", [
    (', weighting="likelihood"', "velocity regression"),
    (", net=made()", "mlp"),
])
def test_bad_options_are_reported(extra, message):
    text = f"""model m {{
  data x: real[2]
  x ~ evolve(flow_matching(){extra})
}}"""
    with pytest.raises(GenSemanticError, match=message):
        gendsl.compile(gendsl.parse(text)).init(jax.random.key(0))


LABELLED = """model labelled {{
  data label: token[1] of 2
  data x: real[2]
  x ~ evolve(flow_matching(), net=mlp(hidden=[64, 64]), sampler=ode(steps=16), given=label{guidance})
}}"""


def test_training_conditional_sampling_guidance_and_ema():
    """A briefly trained conditional model: lower energy distance per label, samples where the
    label's data are (with and without guidance), the EMA and the standardisation handed back."""
    rng = np.random.default_rng(1)
    label = rng.integers(0, 2, (2000, 1))
    centres = np.array([[-2.0, 1.0], [2.0, -1.0]])
    x = centres[label[:, 0]] + 0.4 * rng.standard_normal((2000, 2))
    prog = gendsl.compile(gendsl.parse(LABELLED.format(guidance="")))
    assert "evolve flow_matching" in prog.describe() and prog.log_prob_kind == "estimate"
    params0 = prog.init(jax.random.key(2))
    fit = prog.fit({"label": label, "x": x}, steps=400, key=jax.random.key(3), progress=False)
    guided = gendsl.compile(gendsl.parse(LABELLED.format(guidance=", guidance=1.0")))
    for which in (0, 1):
        given = {"label": np.full((500, 1), which)}
        held = centres[which] + 0.4 * rng.standard_normal((500, 2))
        before = _energy_distance(prog.sample(params0, jax.random.key(4), 500, given)["x"], held)
        draws = np.asarray(prog.sample(fit.params, jax.random.key(4), 500, given)["x"])
        assert _energy_distance(draws, held) < 0.1 * before
        assert np.all(np.abs(draws.mean(0) - centres[which]) < 0.3), (which, draws.mean(0))
        # guidance extrapolates away from the unconditional model: still the label's cluster
        draws = np.asarray(guided.sample(fit.params, jax.random.key(4), 500, given)["x"])
        near = np.linalg.norm(draws - centres[which], axis=1) < np.linalg.norm(draws - centres[1 - which], axis=1)
        assert near.mean() > 0.97, (which, near.mean())
    assert guided.lowered().stochastic[0].mechanism.cost() == 2 * 32
    # fit hands back the moving average and the data's standardisation
    state = fit.state.node_state["x"]
    assert jax.tree_util.tree_all(jax.tree_util.tree_map(jnp.array_equal, fit.params["x"]["net"], state["ema"]))
    np.testing.assert_allclose(fit.params["x"]["shift"], x.mean(0), atol=0.05)
    np.testing.assert_allclose(fit.params["x"]["scale"], x.std(0), rtol=0.05)
    lp = prog.log_prob(fit.params, {"label": label[:50], "x": x[:50]})
    assert lp.shape == (50,) and np.all(np.isfinite(lp))


def test_cli_fit_reports_nfe_and_an_estimated_likelihood(tmp_path):
    import json

    from gendsl.cli import main

    model = tmp_path / "fm.gen"
    model.write_text("model fm {\n  data x: real[2]\n  x ~ evolve(flow_matching(), net=mlp(hidden=[16, 16]), "
                     "sampler=ode(steps=8, solver=\"heun\"))\n}\n")
    out = tmp_path / "run"
    assert main(["fit", str(model), "--data", "builtin:moons", "--n", "600", "--steps", "30", "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["log_prob_kind"] == "estimate" and math.isfinite(metrics["heldout_nll"])
    assert metrics["nfe_per_sample"] == 2 * 8  # Heun: two evaluations per step
    assert math.isfinite(metrics["energy_distance_over_floor"])


# -- EDM: the process, its training weights, and the samplers in scaled coordinates ---------------


def ode_reference(process, y1):
    """The exact probability-flow ODE's end point for Gaussian data (adaptive Tsit5, tight tolerances)."""
    return samplers.solve_ode(gaussian_model(process), process, y1, steps="adaptive", rtol=1e-6, atol=1e-7)[0]


#: well-separated tight clusters: data like EDM's, whose denoiser is nearly constant at low noise
CENTRES = jax.random.normal(jax.random.key(5), (8, 2))
CLUSTER_VAR = 0.01


def mixture_model(process):
    """The exact (x0_hat, eps_hat) of an equal mixture of N(c_k, CLUSTER_VAR I), from its score."""
    def score_fn(t, x, c):
        alpha, sigma = process.alpha_sigma(t)
        var = alpha**2 * CLUSTER_VAR + sigma**2
        d = x[None, :] - alpha * CENTRES
        w = jax.nn.softmax(-0.5 * jnp.sum(d**2, -1) / var)
        return -jnp.sum(w[:, None] * d, 0) / var

    return FromScore(score_fn, process)


def test_edm_heun_is_second_order_and_beats_heun_in_t_at_equal_evaluations():
    """Same prior draws: EDM's sampler halves its error four-fold when its levels double, and at
    35 evaluations it is closer to the exact ODE's (denoised) end than Heun in t at 34."""
    process = EDM()
    model = mixture_model(process)
    y1 = process.prior_sample(jax.random.key(20), (2000, 2))
    exact = samplers.solve_ode(model, process, y1, steps="adaptive", rtol=1e-6, atol=1e-7)[0]
    denoised = jax.vmap(model, (None, 0))(jnp.float32(process.t_min), exact)[0]
    error = lambda a, b: float(jnp.mean(jnp.linalg.norm(a - b, axis=-1)))  # noqa: E731
    solve = jax.jit(lambda y, n: scaled_samplers.solve_edm(model, process, y, jax.random.key(0), steps=n),
                    static_argnums=1)
    (edm18, nfe), (edm36, _) = solve(y1, 18), solve(y1, 36)
    heun17, nfe_heun = jax.jit(lambda y: samplers.solve_ode(model, process, y, steps=17))(y1)
    assert int(nfe) == 35 and int(nfe_heun) == 34
    assert error(edm18, denoised) / error(edm36, denoised) > 3.0
    assert error(edm18, denoised) < error(heun17, exact), (error(edm18, denoised), error(heun17, exact))


@pytest.mark.parametrize("name", ["vp", "edm"])
def test_edm_heun_reproduces_gaussian(name):
    process = EDM() if name == "edm" else PROCESSES[name]
    y1 = exact_prior(process, jax.random.key(20), 4000)
    draws, _ = jax.jit(lambda y: scaled_samplers.solve_edm(gaussian_model(process), process, y, jax.random.key(0),
                                                           steps=40))(y1)
    assert_gaussian(draws)


def test_edm_churn_and_dpm_solver_reproduce_gaussian():
    process = EDM()
    y1 = exact_prior(process, jax.random.key(21), 4000)
    model = gaussian_model(process)
    churned, _ = jax.jit(lambda y: scaled_samplers.solve_edm(model, process, y, jax.random.key(1), steps=32,
                                                             churn=10.0))(y1)
    assert_gaussian(churned)
    assert float(jnp.mean(jnp.abs(churned - ode_reference(process, y1)))) > 0.05  # it is stochastic
    dpm = jax.jit(lambda y, n: scaled_samplers.solve_dpm(model, process, y, steps=n), static_argnums=1)
    draws, nfe = dpm(y1, 24)
    assert int(nfe) == 24
    assert_gaussian(draws)
    # one evaluation a step, second order: 12 steps are far closer to the exact ODE than 12 of Euler
    # in t, and doubling the steps quarters the error
    exact = ode_reference(process, y1)
    error = lambda a: float(jnp.mean(jnp.abs(a - exact)))  # noqa: E731
    euler, _ = jax.jit(lambda y: samplers.solve_ode(model, process, y, steps=12, solver="euler"))(y1)
    assert error(dpm(y1, 12)[0]) < 0.2 * error(euler)
    assert error(dpm(y1, 48)[0]) < 0.35 * error(draws)


def test_edm_training_draws_log_normal_noise_levels_with_unit_target_weight():
    process = EDM()
    u = losses.uniform_times(jax.random.key(22), 20000, "stratified")
    t = process.training_times(u)
    log_sigma = np.log(np.asarray(jax.vmap(process.alpha_sigma)(t)[1]))
    assert abs(log_sigma.mean() - process.p_mean) < 4 * process.p_std / math.sqrt(len(u))
    assert abs(log_sigma.std() - process.p_std) < 0.02
    # lambda(sigma) ||D - x0||^2 with lambda = (sigma^2 + 1) / sigma^2 equals w ||eps_hat - eps||^2
    sigma = jnp.float32(3.0)
    tt = (jnp.log(sigma) - math.log(process.sigma_min)) / math.log(process.sigma_max / process.sigma_min)
    np.testing.assert_allclose(process.training_weight(tt), sigma**2 + 1.0, rtol=1e-4)


def test_edm_loss_is_minimised_by_the_true_denoiser():
    process = EDM()
    base = gaussian_model(process)
    direction = jnp.array([[0.3, -0.5], [0.2, 0.4]])

    def per_key(delta, key):
        key, k_data = jax.random.split(key)
        x0 = jax.random.multivariate_normal(k_data, MU, COV, (2000,))
        model = FromScore(lambda t, x, c: base.score_fn(t, x, c) + delta * jnp.tanh(direction @ x), process)
        return losses.denoising_loss(model, process, x0, None, key)

    keys = jax.random.split(jax.random.key(23), 16)
    grads = jax.jit(jax.vmap(jax.grad(per_key), (None, 0)))(0.0, keys)
    assert abs(float(grads.mean())) < 4 * float(grads.std()) / 4 + 1e-3


def test_scaled_samplers_refuse_flow_matching():
    text = ("model m {\n  data x: real[2]\n  x ~ evolve(flow_matching(), sampler=edm_heun(steps=8))\n}\n")
    with pytest.raises(GenSemanticError, match="infinite at the noise end"):
        gendsl.compile(gendsl.parse(text))
