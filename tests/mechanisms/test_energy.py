"""The energy mechanism: densities, sampling against known laws, constrained and conditional
energies, bases, the training objectives against closed forms, and EBM training (dsm, cd)."""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from scipy import stats

import gendsl
from gendsl.data import builtin
from gendsl.errors import GenSemanticError
from gendsl.mechanisms.energy import cd_loss, dsm_loss, ssm_loss
from gendsl.metrics import energy_distance

BANANA = """
model banana {
  x: real[2] ~ energy(x[0]^2 / 8 + (x[1] - x[0]^2 / 4)^2 / 2, sampler=nuts())
}
"""


def compile_text(text: str) -> gendsl.Program:
    return gendsl.compile(gendsl.parse(text))


def iid_z(x: np.ndarray, mean: float, var: float) -> float:
    return (x.mean() - mean) / np.sqrt(var / x.size)


def test_expression_energy_density_and_plan():
    prog = compile_text(BANANA)
    assert prog.log_prob_kind == "unnormalized"
    plan = prog.describe()
    assert "energy" in plan and "unnormalized" in plan and "nuts" in plan
    x = jax.random.normal(jax.random.key(0), (5, 2)) * 2
    expected = -(x[:, 0] ** 2 / 8 + (x[:, 1] - x[:, 0] ** 2 / 4) ** 2 / 2)
    np.testing.assert_allclose(prog.log_prob({}, {"x": x}), expected, rtol=1e-6)


def test_banana_draws_match_its_moments():
    """x0 ~ N(0, 4), x1 | x0 ~ N(x0^2 / 4, 1): E x1 = 1, Var x1 = 3; y = x1 - x0^2 / 4 ~ N(0, 1)."""
    prog = compile_text(BANANA)
    x = np.asarray(prog.sample({}, jax.random.key(1), 4000)["x"], dtype=np.float64)
    assert x.shape == (4000, 2)
    y = x[:, 1] - x[:, 0] ** 2 / 4
    assert abs(iid_z(x[:, 0], 0.0, 4.0)) < 4
    assert abs(iid_z(x[:, 0] ** 2, 4.0, 32.0)) < 4
    assert abs(iid_z(x[:, 1], 1.0, 3.0)) < 4
    assert abs(iid_z(y, 0.0, 1.0)) < 4 and abs(iid_z(y ** 2, 1.0, 2.0)) < 4


def test_positive_energy_samples_a_gamma():
    """p(s) proportional to s^2 exp(-s) on s > 0 is Gamma(3, 1), sampled in log space."""
    prog = compile_text("model g {\n  s: positive ~ energy(s - 2 * log(s), sampler=mala(warmup=300, steps=300))\n}\n")
    s = np.asarray(prog.sample({}, jax.random.key(2), 3000)["s"], dtype=np.float64)
    assert np.all(s > 0)
    assert abs(iid_z(s, 3.0, 3.0)) < 4
    assert stats.kstest(s, stats.gamma(3).cdf).statistic < 0.04
    lp = np.asarray(prog.log_prob({}, {"s": jnp.array([0.5, 2.0])}))
    np.testing.assert_allclose(lp, -(np.array([0.5, 2.0]) - 2 * np.log([0.5, 2.0])), rtol=1e-6)
    mechanism = prog.lowered().node("s").mechanism
    assert mechanism.log_prob({}, jnp.array([-1.0]), {})[0] == -np.inf  # outside the support


def test_conditional_energy_has_one_chain_per_draw():
    prog = compile_text("model c {\n  mu ~ normal(0, 3)\n  x: real ~ energy((x - mu)^2 / 2, sampler=mala(warmup=200, steps=200))\n}\n")
    draws = prog.sample({}, jax.random.key(3), 2000)
    d = np.asarray(draws["x"] - draws["mu"], dtype=np.float64)
    assert abs(iid_z(d, 0.0, 1.0)) < 4 and abs(stats.kstest(d, "norm").statistic) < 0.05
    with pytest.raises(GenSemanticError, match="each draw needs its own chain"):
        compile_text("model c {\n  mu ~ normal(0, 3)\n  x: real ~ energy((x - mu)^2 / 2, sampler=nuts(chains=4))\n}\n").init(
            jax.random.key(0))


def test_base_distribution_and_base_variable():
    tilted = compile_text("model t {\n  x: real[2] ~ energy(mlp(hidden=[8]), base=normal(1, 2), "
                          "sampler=mala(warmup=50, steps=50))\n}\n")
    params = tilted.init(jax.random.key(0))
    assert set(params["x"]) == {"energy"}  # the leaf base has no parameters
    x = jax.random.normal(jax.random.key(1), (4, 2))
    # the last layer starts at zero: E = 0 and the density is the base's (no confinement with a base)
    np.testing.assert_allclose(tilted.log_prob(params, {"x": x}), stats.norm(1, 2).logpdf(np.asarray(x)).sum(-1), rtol=1e-5)
    draws = np.asarray(tilted.sample(params, jax.random.key(2), 2000)["x"], dtype=np.float64)
    assert abs(iid_z(draws[:, 0], 1.0, 4.0)) < 4 and abs(iid_z(draws[:, 1], 1.0, 4.0)) < 4
    assert abs(np.var(draws) - 4.0) < 0.5
    refine = compile_text("model r {\n  z ~ normal(5, 0.1)\n  x: real ~ energy(x^2 / 2, base=z, sampler=langevin(step_size=1e-6, steps=1))\n}\n")
    out = refine.sample({}, jax.random.key(4), 100)
    np.testing.assert_allclose(out["x"], out["z"], atol=0.01)  # the chains start at z


def test_objectives_match_closed_forms():
    """For data u ~ N(0, 1) in d dimensions and a model N(0, tau^2):
    DSM = d [(1 - s^2/tau^2)^2 + s^2/tau^4] / 2 with s the noise level; SSM = -d/tau^2 + d/(2 tau^4)."""
    d, n, tau2, s = 2, 200_000, 1.7, 0.3
    u = jax.random.normal(jax.random.key(0), (n, d))
    logp = lambda q, g: -0.5 * jnp.sum(q ** 2) / tau2  # noqa: E731
    dsm = float(dsm_loss(logp, u, {}, jax.random.key(1), s))
    np.testing.assert_allclose(dsm, d * ((1 - s ** 2 / tau2) ** 2 + s ** 2 / tau2 ** 2) / 2, rtol=0.02)
    ssm = float(ssm_loss(logp, u, {}, jax.random.key(2), 2))
    np.testing.assert_allclose(ssm, -d / tau2 + d / (2 * tau2 ** 2), rtol=0.03, atol=0.01)
    energy = lambda q, g: jnp.sum(q)  # noqa: E731
    neg = jnp.ones((n, d))
    expected = float(jnp.mean(jnp.sum(u, -1)) - 2.0 + 0.1 * jnp.mean(jnp.sum(u, -1) ** 2 + 4.0))
    np.testing.assert_allclose(float(cd_loss(energy, u, neg, {}, 0.1)), expected, rtol=1e-5)


def _fit_and_score(objective: str, sampler: str, steps: int, seed: int = 0) -> tuple[float, float]:
    data = builtin("moons", 3000, seed=seed).arrays["x"]
    prog = compile_text(f"model ebm {{\n  data x: real[2]\n  x ~ energy(mlp(hidden=[32, 32]), train={objective}, "
                        f"sampler={sampler})\n}}\n")
    params = prog.init(jax.random.key(seed))
    before = energy_distance(prog.sample(params, jax.random.key(10), 1000)["x"], data[:1000])
    fit = prog.fit({"x": data}, steps=steps, key=jax.random.key(seed + 1), batch_size=256,
                   optimizer=optax.adam(3e-3), progress=False)
    assert np.all(np.isfinite(fit.losses))
    after = energy_distance(prog.sample(fit.params, jax.random.key(11), 1000)["x"], data[1000:2000])
    return before, after


def test_dsm_trained_ebm_lowers_the_energy_distance():
    before, after = _fit_and_score("dsm(sigma=0.1, levels=1)", "langevin(step_size=0.005, steps=300)", 300)
    assert after < 0.3 * before, (before, after)


def test_cd_with_a_replay_buffer_trains():
    before, after = _fit_and_score("cd(steps=10, buffer=512)", "mala(step_size=0.01, steps=100)", 150)
    assert after < 0.6 * before, (before, after)


def test_tilted_flow_trains_base_and_energy():
    prog = compile_text("""
model tilted_flow {
  data x: real[2]
  x ~ energy(mlp(hidden=[16]), base=pushforward(normal(0, 1), coupling(layers=2, hidden=[16])), train=cd(steps=3, buffer=64), sampler=mala(step_size=0.02, steps=10))
}
""")
    data = builtin("moons", 512, seed=0).arrays["x"]
    params = prog.init(jax.random.key(0))
    assert set(params["x"]) == {"energy", "base"}
    fit = prog.fit({"x": data}, steps=20, key=jax.random.key(1), batch_size=64, progress=False)
    assert np.all(np.isfinite(fit.losses)) and fit.losses[-5:].mean() < fit.losses[:5].mean()
    changed = jax.tree_util.tree_map(lambda a, b: bool(jnp.any(a != b)), params["x"]["base"], fit.params["x"]["base"])
    assert all(jax.tree_util.tree_leaves(changed))  # the base trained by its own likelihood
    buffer = fit.state.node_state["x"]["buffer"]
    assert buffer.shape == (64, 2) and np.all(np.isfinite(buffer))


@pytest.mark.parametrize("decay", [0.0, 0.999])
def test_a_network_energy_keeps_the_moving_average_of_its_weights(decay):
    """After one update from P0 to P1 the kept weights are d * P0 + (1 - d) * P1 with the warmed-up
    decay d = min(decay, 1 / 10); ema=0 keeps the last weights."""
    prog = compile_text(f"model e {{\n  data x: real[2]\n  x ~ energy(mlp(hidden=[8]), ema={decay})\n}}\n")
    node = prog.plan.node("x").mechanism
    p0, p1 = prog.init(jax.random.key(0))["x"], prog.init(jax.random.key(1))["x"]
    state = node.init_train_state(jax.random.key(2), p0)
    _, state = node.train_loss(p1, state, jnp.ones((4, 2)), {}, jax.random.key(3))
    kept = node.finalize(p1, state)["energy"]
    d = min(decay, 0.1)
    expected = jax.tree_util.tree_map(lambda a, b: d * a + (1 - d) * b, p0["energy"], p1["energy"])
    for got, want in zip(jax.tree_util.tree_leaves(kept), jax.tree_util.tree_leaves(expected)):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
    with pytest.raises(GenSemanticError, match="ema"):
        compile_text("model e {\n  data x: real[2]\n  x ~ energy(mlp(hidden=[8]), ema=1)\n}\n").init(jax.random.key(0))


def test_energy_errors():
    with pytest.raises(GenSemanticError, match="nothing to train"):
        compile_text("model e {\n  x: real ~ energy(x^2, train=dsm())\n}\n").init(jax.random.key(0))
    with pytest.raises(GenSemanticError, match="mlp"):
        compile_text("model e {\n  x: real[2] ~ energy(made(hidden=[8]))\n}\n").init(jax.random.key(0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(GenSemanticError, match="no density"):
            compile_text("model e {\n  x: real[2] ~ energy(mlp(), base=pushforward(normal(0, 1), "
                         "generator(net=mlp(hidden=[8]), critic=mlp(hidden=[8]))))\n}\n").init(jax.random.key(0))


@pytest.mark.parametrize("objective", ["dsm(sigma=0.1)", "cd(steps=5, buffer=256)"])
def test_cli_ebm_fit_reports_an_unnormalized_kind_and_an_energy_distance(objective, tmp_path):
    import json

    from gendsl.cli import main

    model = tmp_path / "ebm.gen"
    model.write_text(f"model ebm {{\n  data x: real[2]\n  x ~ energy(mlp(hidden=[32, 32]), train={objective}, "
                     f"sampler=mala(step_size=0.01, steps=50))\n}}\n")
    out = tmp_path / "run"
    assert main(["fit", str(model), "--data", "builtin:moons", "--n", "2000", "--steps", "150", "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["log_prob_kind"] == "unnormalized" and metrics["heldout_nll"] is None
    assert np.isfinite(metrics["energy_distance"]) and np.isfinite(metrics["energy_distance_over_floor"])
    assert metrics["energy_distance"] > 0
