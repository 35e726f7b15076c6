"""truncated(...): log-densities against scipy's truncated distributions, draws inside the bounds,
a latent truncated variable in a posterior, and clear refusals."""

import re

import jax
import numpy as np
import pytest
import scipy.stats as st

import gendsl
from gendsl.errors import GenRuntimeError, GenSemanticError
from gendsl.mechanisms.truncated import TRUNCATABLE


def _program(rhs, vtype="real"):
    return gendsl.compile(gendsl.parse(f"model t {{\n  data x: {vtype}\n  x ~ {rhs}\n}}\n"))


def _truncate(ref, low, high):
    """scipy's frozen ``ref`` renormalised on [low, high]: its log-density as a function."""
    mass = ref.cdf(high) - ref.cdf(low)
    return lambda x: ref.logpdf(x) - np.log(mass)


# base -> (its arguments, scipy frozen distribution)
BASES = {
    "normal": ("1, 2", st.norm(1, 2)),
    "cauchy": ("0, 0.5", st.cauchy(0, 0.5)),
    "student_t": ("4, 0, 1.5", st.t(4, 0, 1.5)),
    "laplace": ("0.5, 1", st.laplace(0.5, 1)),
    "logistic": ("0, 2", st.logistic(0, 2)),
}


def test_every_truncatable_base_is_tested():
    assert set(BASES) == set(TRUNCATABLE)


@pytest.mark.parametrize("base", sorted(BASES))
@pytest.mark.parametrize("bounds, low, high", [("low=-0.5, high=2.5", -0.5, 2.5), ("low=0", 0.0, np.inf),
                                               ("high=1", -np.inf, 1.0)])
def test_log_density_matches_scipy(base, bounds, low, high):
    args, ref = BASES[base]
    xs = np.array([0.1, 0.7, 0.95]) * (min(high, 3.0) - max(low, -3.0)) + max(low, -3.0)
    lp = np.asarray(_program(f"truncated({base}({args}), {bounds})").log_prob({}, {"x": xs}))
    np.testing.assert_allclose(lp, _truncate(ref, low, high)(xs), rtol=1e-4, atol=1e-5)


def test_vector_bounds_and_draws_stay_inside():
    prog = _program("truncated(normal(0, 1), low=[-1, 0, 1], high=[0, 2, 1.5])", "real[3]")
    x = np.asarray(prog.sample({}, jax.random.key(0), 4000)["x"])
    assert np.all(x >= [-1, 0, 1]) and np.all(x <= [0, 2, 1.5])
    ref = st.truncnorm(1, 1.5)  # standardised bounds: a = 1, b = 1.5
    assert abs(x[:, 2].mean() - ref.mean()) < 4 * ref.std() / np.sqrt(len(x))
    lp = np.asarray(prog.log_prob({}, {"x": np.array([[-0.5, 1.0, 1.2]])}))
    expected = sum(st.truncnorm(a, b).logpdf(v) for a, b, v in [(-1, 0, -0.5), (0, 2, 1.0), (1, 1.5, 1.2)])
    np.testing.assert_allclose(lp, [expected], rtol=1e-5)


def test_a_latent_truncated_variable_has_the_truncated_posterior():
    """A prior restricted to [0, 3] with no data: the draws are that truncated normal."""
    prog = gendsl.compile(gendsl.parse("model t {\n  data y: real\n  m ~ truncated(normal(1, 2), low=0, high=3)\n"
                                       "  y ~ normal(m, 100)\n}\n"))
    post = prog.infer({"y": 0.0}, num_chains=2, num_warmup=300, num_samples=500)
    m = post.samples["m"].reshape(-1)
    assert m.min() >= 0 and m.max() <= 3
    ref = st.truncnorm(-0.5, 1.0, loc=1, scale=2)
    se = post.summary()["m"]["mcse_mean"]
    assert abs(m.mean() - ref.mean()) < 4 * se + 0.01


@pytest.mark.parametrize("rhs, words", [
    ("truncated(gamma(2, 1), low=1)", "truncated() can restrict normal"),
    ("truncated(normal(0, 1))", "needs low=, high= or both"),
    ("truncated(normal(0, 1), low=[0, 1, 2])", "declared scalar"),
    ("truncated(0, low=1)", "must be a distribution"),
])
def test_bad_truncations_are_refused_at_check(rhs, words):
    with pytest.raises(GenSemanticError, match=re.escape(words)):
        gendsl.parse(f"model t {{\n  x: real ~ {rhs}\n}}\n")


@pytest.mark.parametrize("rhs", ["truncated(normal(0, 1), low=-10, high=10)", "truncated(student_t(3, 0, 1), high=9)"])
def test_the_mechanism_contract(rhs):
    """What tests/test_contract.py checks of every advisor choice: draws, per-example densities, a loss."""
    prog = _program(rhs, "real[2]")
    params = prog.init(jax.random.key(0))
    try:
        assert prog.sample(params, jax.random.key(1), 5)["x"].shape == (5, 2)
    except GenRuntimeError as err:  # Student's t inverse cdf: numpyro takes it from tensorflow_probability
        assert "student_t" in rhs and "pip install tensorflow-probability" in str(err)
    data = {"x": np.random.default_rng(0).normal(size=(8, 2))}
    lp = np.asarray(prog.log_prob(params, data))
    assert lp.shape == (8,) and np.all(np.isfinite(lp)) and np.isfinite(float(prog.loss(params, data, jax.random.key(2))))
    assert prog.lowered().node("x").mechanism.describe()["likelihood"] == "exact"
