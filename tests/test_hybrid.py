"""Hybrid models: mechanisms mixed in one program, compiled by the generic compiler."""

import jax
import numpy as np
import optax
import pytest

import gendsl
from gendsl.builder import ModelBuilder, dot, normal, real
from gendsl.data import LABELLED_CENTRES, builtin


def test_tokens_condition_a_flow_matching_model_per_label():
    prog = gendsl.compile(gendsl.load(f"{_examples()}/labelled_points.gen"))
    data = builtin("labelled_blobs", 4000, seed=0).arrays
    data = {"label": data["label"], "x": data["x"]}
    fit = prog.fit(data, steps=700, key=jax.random.key(0), batch_size=256, optimizer=optax.adam(3e-3), progress=False)
    draws = prog.sample(fit.params, jax.random.key(1), 2000)
    label, x = np.asarray(draws["label"][:, 0]), np.asarray(draws["x"])
    for k in range(4):
        mine = x[label == k]
        assert len(mine) > 300  # the label model learned the (uniform) label frequencies
        inside = (np.sign(mine) == np.sign(LABELLED_CENTRES[k])).all(axis=1).mean()
        assert inside >= 0.95, (k, inside)
    assert prog.log_prob_kind == "estimate"  # exact (factorize) + estimate (evolve)


def _examples():
    from pathlib import Path

    return str(Path(__file__).resolve().parent.parent / "examples")


def test_energy_tilting_a_base_gives_the_product_density():
    # N(1, 1) tilted by exp(-x^2/2) is N(1/2, 1/2)
    prog = gendsl.compile(gendsl.parse(
        "model tilt {\n  x: real[1] ~ energy(x[0]^2 / 2, base=normal(1, 1), sampler=nuts(warmup=200, steps=400))\n}\n"))
    x = np.asarray(prog.sample({}, jax.random.key(0), 2000)["x"][:, 0])
    assert prog.log_prob_kind == "unnormalized"
    # draws are autocorrelated within chains: allow 4 SE at a conservative effective size of n/4
    se = np.sqrt(0.5 / (len(x) / 4))
    assert abs(x.mean() - 0.5) < 4 * se
    assert abs(x.var() - 0.5) < 0.1


@pytest.fixture(scope="module")
def gaussian_prior():
    rng = np.random.default_rng(0)
    mean, chol = np.array([1.0, -1.0]), np.array([[1.0, 0.0], [0.6, 0.5]])
    x = (mean + rng.normal(size=(20000, 2)) @ chol.T).astype(np.float32)
    prog = gendsl.compile(gendsl.parse("model g {\n  data x: real[2]\n  x ~ factorize(made(hidden=[16], components=1))\n}\n"))
    fit = prog.fit({"x": x}, steps=1500, key=jax.random.key(0), batch_size=512, optimizer=optax.adam(1e-2), progress=False)
    return prog, fit.params, x.mean(0), np.cov(x.T)


def test_learned_prior_posterior_matches_the_linear_gaussian_closed_form(gaussian_prior):
    prog, params, m0, S0 = gaussian_prior
    A = np.array([[1.0, 0.5], [0.0, 1.0], [1.0, -1.0]])
    noise = 0.5
    y = np.array([2.0, -0.5, 1.0])
    m = ModelBuilder("inverse_problem")
    m.data("y", real(3))
    x = m.sample("x", gendsl.prior(prog, params))
    m.sample("y", normal(dot([[1.0, 0.5], [0.0, 1.0], [1.0, -1.0]], x), noise))
    post_prog = gendsl.compile(m.build())
    post = post_prog.infer({"y": y}, key=jax.random.key(1), num_chains=4, num_samples=1000, num_warmup=500)
    # closed form with the empirical Gaussian the prior was trained on
    precision = np.linalg.inv(S0) + A.T @ A / noise**2
    cov = np.linalg.inv(precision)
    mean = cov @ (np.linalg.solve(S0, m0) + A.T @ y / noise**2)
    summary = post.summary()
    draws = np.asarray(post.samples["x"]).reshape(-1, 2)
    for i in range(2):
        ess = float(np.asarray(summary["x"]["ess_bulk"]).reshape(-1)[i])
        se = np.sqrt(cov[i, i] / ess)
        assert abs(draws[:, i].mean() - mean[i]) < 4 * se + 0.02, (i, draws[:, i].mean(), mean[i], se)
        assert abs(draws[:, i].std() / np.sqrt(cov[i, i]) - 1) < 0.1


def test_learned_prior_from_a_run_folder_in_text(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "g.gen").write_text("model g {\n  data x: real[2]\n  x ~ factorize(made(hidden=[8], components=1))\n}\n")
    np.save(tmp_path / "x.npy", np.random.default_rng(0).normal(size=(500, 2)).astype(np.float32))
    from gendsl.cli import main

    assert main(["fit", "g.gen", "--data", "x.npy", "--steps", "30", "--out", "runs/g", "--quiet"]) == 0
    model = gendsl.parse('model post {\n  data y: real[2]\n  x ~ prior("runs/g")\n  y ~ normal(x, 1)\n}\n')
    assert str(model["x"].type) == "real[2]"  # read from the run
    prog = gendsl.compile(model)
    assert "prior(g.x: factorize)" in prog.describe()
    draws = prog.sample({}, jax.random.key(0), 5)
    assert draws["x"].shape == (5, 2) and np.isfinite(prog.log_prob({}, draws)).all()
