"""Bijective flows away from their data (issue 13): bounded conditioners, the data's own units,
and trained densities that stay finite and sensible 1-2 standard deviations off the data."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from scipy import stats

import gendsl
from gendsl.data import builtin
from gendsl.mechanisms.pushforward.bijections import BIJECTIONS
from tests.mechanisms.test_pushforward import random_flow

MAPS = {
    "coupling": "coupling(layers=4, hidden=[32, 32])",
    "spline": "spline(layers=2, bins=8, hidden=[32, 32])",
    "maf": "maf(layers=3, hidden=[32, 32])",
}


def compile_flow(dim: int, map_text: str, given: str = "") -> gendsl.Program:
    head = "data label: token[1] of 2\nlabel ~ factorize(mlp(hidden=[8]))\n" if given else ""
    tail = f", given={given}" if given else ""
    return gendsl.compile(gendsl.parse(
        f"model m {{\n{head}data x: real[{dim}]\nx ~ pushforward(normal(0, 1), {map_text}{tail})\n}}"))


def off_the_data(x: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Rows of ``x`` with one coordinate moved 1-2 standard deviations beyond the range of ``x``."""
    sd, lo, hi = x.std(0), x.min(0), x.max(0)
    points = x[rng.integers(0, len(x), n)].copy()
    d = rng.integers(0, x.shape[1], n)
    off = rng.uniform(1.0, 2.0, n) * sd[d]
    points[np.arange(n), d] = np.where(rng.random(n) < 0.5, hi[d] + off, lo[d] - off)
    return points.astype(np.float32)


@pytest.mark.parametrize("name,cond_dim", [(name, c) for name in sorted(BIJECTIONS) for c in (0, 2)])
def test_far_from_the_data_a_flow_grows_linearly(name, cond_dim):
    """A flow with random (far from identity) parameters, pulled back from points 1e3 and 1e5
    units out: the latent grows in proportion (the conditioners see squashed inputs, so every
    shift, scale and knot is a bounded function of x) and the log-det stops changing. Without
    the squash the conditioners extrapolate linearly and the latent grows like a power of x."""
    flow = random_flow(name, 3, cond_dim, seed=5)
    k_sign, k_size = jax.random.split(jax.random.key(6))
    directions = jax.random.rademacher(k_sign, (32, 3), jnp.float32) * jax.random.uniform(k_size, (32, 3), minval=0.5,
                                                                                         maxval=1.5)
    context = jax.random.normal(jax.random.key(7), (32, cond_dim)) if cond_dim else None

    @jax.jit
    def pull_back(scale):
        return jax.vmap(flow.inverse_and_log_det)(scale * directions, context)

    z_near, log_det_near = pull_back(1e3)
    z_far, log_det_far = pull_back(1e5)
    assert np.all(np.isfinite(z_far)) and np.all(np.isfinite(log_det_far))
    ratio = np.linalg.norm(z_far, axis=1) / np.linalg.norm(z_near, axis=1)
    assert np.all(ratio < 100 * 1.05), ratio.max()
    np.testing.assert_allclose(log_det_far, log_det_near, atol=1e-3)


def test_the_flow_works_in_the_data_units():
    """Data in any units: with no training (learning rate 0, one full batch), the flow is the
    identity between the base and the standardised data, so its density is the diagonal Gaussian
    with the data's means and standard deviations (closed form), and its draws have them."""
    rng = np.random.default_rng(0)
    loc, scale = np.array([1000.0, -5.0, 0.01]), np.array([300.0, 2.0, 0.001])
    x = (loc + scale * rng.standard_normal((512, 3))).astype(np.float32)
    prog = compile_flow(3, MAPS["coupling"])
    fit = prog.fit({"x": x}, steps=1, batch_size=512, optimizer=optax.sgd(0.0), key=jax.random.key(0),
                   progress=False)
    expected = stats.norm(x.mean(0, dtype=np.float64), x.std(0, dtype=np.float64)).logpdf(x).sum(-1)
    np.testing.assert_allclose(prog.log_prob(fit.params, {"x": x}), expected, rtol=1e-4, atol=1e-3)
    draws = np.asarray(prog.sample(fit.params, jax.random.key(1), 4000)["x"], np.float64)
    se = x.std(0) / np.sqrt(4000)
    assert np.all(np.abs(draws.mean(0) - x.mean(0)) < 4 * se)
    assert np.all(np.abs(draws.std(0) / x.std(0) - 1) < 4 / np.sqrt(2 * 4000))


def gaussian_nll(train: np.ndarray, x: np.ndarray) -> float:
    """Mean NLL of ``x`` under the full-covariance Gaussian fitted to ``train``."""
    return -float(stats.multivariate_normal(train.mean(0), np.cov(train.T)).logpdf(x).mean())


@pytest.fixture(scope="module")
def moons():
    x = builtin("moons", 3000, seed=2).arrays["x"]
    return x[:2000], x[2000:]


@pytest.mark.parametrize("name,given", [*((name, "") for name in sorted(MAPS)), ("coupling", "label")])
def test_trained_flow_is_sensible_off_the_data(name, given, moons):
    """Trained with validation-based stopping on moons (points 0.05 from a curve, so the flow
    contracts hard), every bijection (and a conditional one) keeps held-out points and points 1-2
    sd beyond the data's range finite and within bounds; affine flows without the squashed
    conditioners reached log-densities of -1e11 there."""
    train, held_out = moons
    rng = np.random.default_rng(3)
    data = {"x": train}
    if given:
        data["label"] = (train[:, :1] > 0.5).astype(np.int32)
    prog = compile_flow(2, MAPS[name], given)
    fit = prog.fit(data, steps=1500, batch_size=100, key=jax.random.key(4), progress=False,
                   validation=0.1, eval_every=50, patience=6)
    points = off_the_data(train, 500, rng)

    def nll(x):
        values = {"x": x, **({"label": (x[:, :1] > 0.5).astype(np.int32)} if given else {})}
        return -np.asarray(prog.log_prob(fit.params, values))

    held, off = nll(held_out), nll(points)
    assert np.all(np.isfinite(held)) and np.all(np.isfinite(off))
    assert held.mean() < gaussian_nll(train, held_out) - 0.3
    assert held.max() < 25
    assert np.median(off) < 3e3 and off.max() < 1e5, (np.median(off), off.max())
