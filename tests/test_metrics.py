"""Energy distance, its noise floor, and timing."""

from __future__ import annotations

import math
import time

import jax.numpy as jnp
import numpy as np
import pytest
from scipy.spatial.distance import cdist
from scipy.stats import norm

import gendsl
from gendsl.metrics import energy_distance, floor_multiple, noise_floor, time_call


def _brute(x, y, unbiased=True):
    n, m = len(x), len(y)
    dxx, dyy = cdist(x, x).sum(), cdist(y, y).sum()
    if unbiased:
        return 2 * cdist(x, y).mean() - dxx / (n * (n - 1)) - dyy / (m * (m - 1))
    return 2 * cdist(x, y).mean() - dxx / n**2 - dyy / m**2


def _closed_form_1d(mu):
    """Energy distance between N(0, 1) and N(mu, 1)."""
    s = math.sqrt(2.0)  # X - Y ~ N(-mu, 2)
    e_xy = s * math.sqrt(2 / math.pi) * math.exp(-(mu**2) / 4) + mu * (1 - 2 * norm.cdf(-mu / s))
    e_xx = 2 / math.sqrt(math.pi)
    return 2 * e_xy - 2 * e_xx


@pytest.mark.parametrize("unbiased", [True, False])
@pytest.mark.parametrize("chunk", [None, 8])
def test_blocked_computation_equals_brute_force(unbiased, chunk):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(37, 3, 2))  # trailing axes are flattened
    y = rng.normal(size=(53, 3, 2)) + 0.3
    expected = _brute(x.reshape(37, -1), y.reshape(53, -1), unbiased)
    got = energy_distance(x, y, unbiased=unbiased, chunk=chunk)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_zero_in_expectation_for_one_gaussian():
    rng = np.random.default_rng(1)
    vals = np.array(
        [energy_distance(rng.normal(size=(300, 2)), rng.normal(size=(300, 2))) for _ in range(40)]
    )
    se = vals.std(ddof=1) / math.sqrt(len(vals))
    assert abs(vals.mean()) < 4 * se
    assert np.any(vals < 0)  # unbiased: both signs occur


@pytest.mark.parametrize("mu", [0.5, 2.0])
def test_matches_closed_form_for_shifted_1d_gaussians(mu):
    rng = np.random.default_rng(2)
    vals = np.array(
        [energy_distance(rng.normal(size=800), rng.normal(size=800) + mu) for _ in range(12)]
    )
    se = vals.std(ddof=1) / math.sqrt(len(vals))
    truth = _closed_form_1d(mu)
    assert vals.mean() > 10 * se  # clearly positive
    assert abs(vals.mean() - truth) < 4 * se


def test_noise_floor_is_positive_and_matches_its_expectation():
    rng = np.random.default_rng(3)
    n = 400
    floors = np.array([noise_floor(rng.normal(size=n), rng.normal(size=n)) for _ in range(40)])
    assert np.all(floors > 0)
    expected = 2 / math.sqrt(math.pi) * 2 / n  # E|X - X'| (1/n + 1/m)
    se = floors.std(ddof=1) / math.sqrt(len(floors))
    assert abs(floors.mean() - expected) < 4 * se
    with pytest.raises(ValueError, match="400"):
        noise_floor(rng.normal(size=n), rng.normal(size=n + 1))


def test_floor_multiple_is_about_one_for_a_perfect_model_and_large_for_a_bad_one():
    rng = np.random.default_rng(4)
    n = 300
    perfect = [
        floor_multiple(rng.normal(size=(2 * n, 2)), rng.normal(size=(n, 2)), rng.normal(size=(n, 2)))
        for _ in range(30)
    ]
    se = np.std(perfect, ddof=1) / math.sqrt(len(perfect))
    assert abs(np.mean(perfect) - 1.0) < 4 * se
    bad = floor_multiple(rng.normal(size=(n, 2)) + 1.0, rng.normal(size=(n, 2)), rng.normal(size=(n, 2)))
    assert bad > 10
    with pytest.raises(ValueError):
        floor_multiple(rng.normal(size=(n - 1, 2)), rng.normal(size=(n, 2)), rng.normal(size=(n, 2)))


def test_shape_errors():
    with pytest.raises(ValueError, match="features"):
        energy_distance(np.zeros((5, 2)), np.zeros((5, 3)))
    with pytest.raises(ValueError, match="at least 2"):
        energy_distance(np.zeros((1, 2)), np.zeros((5, 2)))


class _Pending:
    """A stand-in for an asynchronously dispatched result: ready only after a wait."""

    def __init__(self, wait):
        self.wait = wait
        self.blocked = False

    def block_until_ready(self):
        time.sleep(self.wait)
        self.blocked = True
        return self


def test_time_call_counts_the_wait_for_results():
    out, seconds = time_call(lambda: {"a": _Pending(0.05), "b": 3})
    assert out["a"].blocked and out["b"] == 3
    assert seconds >= 0.05


def test_time_call_warmup_runs_once_untimed():
    calls = []

    def compiles_first(x):
        time.sleep(0.3 if not calls else 0.01)  # the first call pays for compilation
        calls.append(x)
        return jnp.ones(3) * x

    out, seconds = time_call(compiles_first, 2.0, warmup=True)
    assert len(calls) == 2 and 0.01 <= seconds < 0.2
    np.testing.assert_allclose(out, 2.0)
    time_call(compiles_first, 2.0)
    assert len(calls) == 3


def test_the_heldout_nll_is_scored_in_chunks_within_a_time_allowance():
    from gendsl.fit_metrics import heldout_log_prob

    prog = gendsl.compile(gendsl.parse("model m {\n  data x: real[2]\n  x ~ normal(0.5, 2)\n}\n"))
    x = np.random.default_rng(0).normal(size=(150, 2)).astype(np.float32)
    whole = np.asarray(prog.log_prob({}, {"x": x}))
    np.testing.assert_allclose(heldout_log_prob(prog, {}, {"x": x}, chunk=64), whole, rtol=1e-6)  # 64 + 64 + 22 padded
    first = heldout_log_prob(prog, {}, {"x": x}, chunk=64, seconds=0.0)  # out of time after the first chunk
    np.testing.assert_allclose(first, whole[:64], rtol=1e-6)
