"""hmm(...): the forward algorithm and the smoothed states against brute-force enumeration of every
state path, draws with the chain's moments, a posterior through it (with its hidden states), and
clear refusals at check."""

import itertools
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats as st
from scipy.special import logsumexp

import gendsl
from gendsl.errors import GenSemanticError
from gendsl.mechanisms.hmm import forward, smoothed

INIT = np.array([0.5, 0.3, 0.2])
TRANS = np.array([[0.8, 0.15, 0.05], [0.1, 0.7, 0.2], [0.25, 0.25, 0.5]])
GAUSSIAN = """
model h {{
  data y: {vtype}
  y ~ hmm(init=[0.5, 0.3, 0.2], trans=[[0.8, 0.15, 0.05], [0.1, 0.7, 0.2], [0.25, 0.25, 0.5]], emission={emission})
}}
"""


def _brute_force(y, emission_logpdf):
    """log sum over all K^T state paths of p(path) p(y | path)."""
    total = []
    for path in itertools.product(range(len(INIT)), repeat=len(y)):
        lp = np.log(INIT[path[0]]) + sum(np.log(TRANS[a, b]) for a, b in zip(path, path[1:]))
        total.append(lp + sum(emission_logpdf(t, s) for t, s in enumerate(path)))
    return logsumexp(total)


@pytest.mark.parametrize("emission, vtype, logpdf, ys", [
    ("normal([-1, 0.5, 2], [0.5, 1, 0.8])", "real[5]",
     lambda y: lambda t, s: st.norm([-1, 0.5, 2][s], [0.5, 1, 0.8][s]).logpdf(y[t]),
     [[-1.2, 0.3, 2.2, 1.9, -0.4], [0.0, 0.0, 0.0, 0.0, 0.0]]),
    ("poisson([1, 4, 9])", "int[5]", lambda y: lambda t, s: st.poisson([1, 4, 9][s]).logpmf(y[t]),
     [[0, 3, 9, 8, 1], [2, 2, 2, 2, 2]]),
    ("normal([-1, 0.5, 2], 1)", "real[5]", lambda y: lambda t, s: st.norm([-1, 0.5, 2][s], 1).logpdf(y[t]),
     [[1.0, -2.0, 0.5, 0.5, 3.0]]),
])
def test_forward_algorithm_equals_brute_force_enumeration(emission, vtype, logpdf, ys):
    prog = gendsl.compile(gendsl.parse(GAUSSIAN.format(vtype=vtype, emission=emission)))
    lp = np.asarray(prog.log_prob({}, {"y": np.array(ys)}))
    np.testing.assert_allclose(lp, [_brute_force(y, logpdf(y)) for y in ys], rtol=1e-5)


def test_smoothed_states_equal_brute_force_posteriors():
    """p(s[t] = k | y) by forward-backward against the sum over the paths through state k at time t."""
    mu, sd = np.array([-1.0, 0.5, 2.0]), np.array([0.5, 1.0, 0.8])
    y = np.array([-1.2, 0.3, 2.2, 1.9, -0.4])
    paths = list(itertools.product(range(3), repeat=len(y)))
    weights = np.array([np.log(INIT[p[0]]) + sum(np.log(TRANS[a, b]) for a, b in zip(p, p[1:]))
                        + st.norm(mu[list(p)], sd[list(p)]).logpdf(y).sum() for p in paths])
    weights = np.exp(weights - logsumexp(weights))
    expected = np.zeros((len(y), 3))
    for w, p in zip(weights, paths):
        expected[np.arange(len(y)), list(p)] += w
    got = np.exp(np.asarray(smoothed(jnp.log(INIT), jnp.log(TRANS), st.norm(mu, sd).logpdf(y[:, None]))))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(float(forward(jnp.log(INIT), jnp.log(TRANS), st.norm(mu, sd).logpdf(y[:, None]))),
                               _brute_force(y, lambda t, s: st.norm(mu[s], sd[s]).logpdf(y[t])), rtol=1e-6)


def test_draws_follow_the_chain():
    prog = gendsl.compile(gendsl.parse(GAUSSIAN.format(vtype="real[4]", emission="normal([-10, 0, 10], 0.01)")))
    y = np.asarray(prog.sample({}, jax.random.key(0), 20000)["y"])
    states = np.round(y / 10).astype(int) + 1
    n = len(states)
    np.testing.assert_allclose(np.bincount(states[:, 0], minlength=3) / n, INIT, atol=4 * np.sqrt(0.25 / n))
    from_0 = states[states[:, 0] == 0, 1]
    np.testing.assert_allclose(np.bincount(from_0, minlength=3) / len(from_0), TRANS[0], atol=4 * np.sqrt(0.25 / len(from_0)))
    marginal_2 = INIT @ TRANS @ TRANS
    np.testing.assert_allclose(np.bincount(states[:, 2], minlength=3) / n, marginal_2, atol=4 * np.sqrt(0.25 / n))


def test_a_posterior_through_the_forward_algorithm():
    """Emission means of a two-state HMM recovered from a long simulated sequence."""
    text = """
model h {
  data T: int
  data y: real[T]
  p: unit[2] ~ beta(8, 2)
  trans = [[p[0], 1 - p[0]], [1 - p[1], p[1]]]
  mu: real[2] ~ normal([-1, 1], 1)
  y ~ hmm(init=[0.5, 0.5], trans=trans, emission=normal(mu, 0.5))
}
"""
    rng = np.random.default_rng(0)
    T, stay, means = 200, 0.9, np.array([-1.5, 1.5])
    states = [0]
    for _ in range(T - 1):
        states.append(states[-1] if rng.random() < stay else 1 - states[-1])
    y = means[np.array(states)] + 0.5 * rng.normal(size=T)
    post = gendsl.compile(gendsl.parse(text)).infer({"T": T, "y": y}, num_chains=2, num_warmup=300, num_samples=300)
    mu = post.samples["mu"].reshape(-1, 2)
    assert int(post.divergences) == 0
    assert np.all(np.abs(mu.mean(0) - means) < 4 * mu.std(0) + 0.02)
    # the hidden states' posterior per draw: the means 6 emission sds apart, so almost every state is clear
    probs = post.probabilities["y"]
    assert probs.shape == (2, 300, T, 2) and np.allclose(probs.sum(-1), 1)
    assert np.mean(probs.mean(axis=(0, 1)).argmax(-1) == np.array(states)) > 0.97


@pytest.mark.parametrize("rhs, vtype, words", [
    ("hmm(init=[0.5, 0.5], trans=[[0.9, 0.1], [0.2, 0.8]], emission=normal([0, 1, 2], 1))", "real[4]",
     "must be one per state ([2])"),
    ("hmm(init=[0.5, 0.5], trans=[0.9, 0.1], emission=normal(0, 1))", "real[4]", "must be a [2, 2] matrix"),
    ("hmm(init=[0.5, 0.5], trans=[[0.9, 0.1], [0.2, 0.8]], emission=poisson([1, 2]))", "real[4]",
     "draws integers"),
    ("hmm(init=[0.5, 0.5], trans=[[0.9, 0.1], [0.2, 0.8]], emission=normal(0, 1))", "real[2, 3]",
     "one axis"),
    ("hmm(init=[0.5, 0.5], trans=[[0.9, 0.1], [0.2, 0.8]], emission=dirichlet([1, 1]))", "real[4]",
     "univariate"),
])
def test_bad_hmms_are_refused_at_check(rhs, vtype, words):
    with pytest.raises(GenSemanticError, match=re.escape(words)):
        gendsl.parse(f"model h {{\n  data y: {vtype}\n  y ~ {rhs}\n}}\n")


def test_the_mechanism_contract():
    """What tests/test_contract.py checks of every advisor choice: draws, per-example densities, a loss."""
    prog = gendsl.compile(gendsl.parse(GAUSSIAN.format(vtype="real[2]", emission="normal([-1, 0, 1], 1)")))
    params = prog.init(jax.random.key(0))
    assert prog.sample(params, jax.random.key(1), 5)["y"].shape == (5, 2)
    data = {"y": np.random.default_rng(0).normal(size=(8, 2))}
    lp = np.asarray(prog.log_prob(params, data))
    assert lp.shape == (8,) and np.all(np.isfinite(lp)) and np.isfinite(float(prog.loss(params, data, jax.random.key(2))))
    assert prog.lowered().node("y").mechanism.describe()["likelihood"] == "exact"
