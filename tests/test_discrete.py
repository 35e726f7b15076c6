"""Discrete latents summed out of the posterior: the marginal log joint against hand-written
log-sum-exp mixtures, a short NUTS run that recovers a two-component mixture and classifies its
points (threshold from the known overlap), the per-draw conditionals, and clear refusals."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats
from scipy.special import logsumexp

import gendsl
from gendsl.errors import GenDataError, GenSemanticError
from gendsl.inference import log_joint
from gendsl.inference_run import write_posterior

MIXTURE = """
model mixture {
  data N: int
  data y: real[N]
  theta: unit[2] ~ dirichlet([2, 2])
  m ~ normal(0, 3)
  d ~ half_normal(3)
  mu = [m - d, m + d]
  sigma ~ half_normal(2)
  z: int[N] ~ categorical(theta)
  y ~ normal(mu[z], sigma)
}
"""

#: the simulated mixture: weights, means, scale
WEIGHTS, MEANS, SCALE, N = np.array([0.4, 0.6]), np.array([-2.0, 2.0]), 1.0, 200


def compile_text(text: str) -> gendsl.Program:
    return gendsl.compile(gendsl.parse(text))


@pytest.fixture(scope="module")
def simulated():
    rng = np.random.default_rng(3)
    labels = (rng.random(N) < WEIGHTS[1]).astype(int)
    return labels, MEANS[labels] + SCALE * rng.normal(size=N)


def _point(joint, arrays, params, seed=0):
    """A random unconstrained point, and the joint's terms, conditionals, log density and values there."""
    q = jnp.asarray(np.random.default_rng(seed).uniform(-2, 2, joint.dim))
    at = jax.jit(lambda q: (joint.terms(q, arrays, params), joint.conditionals(q, arrays, params),
                            joint.logdensity(q, arrays, params), joint.constrain(q, arrays, params)))
    return at(q)


def test_the_marginal_is_the_log_sum_exp_mixture(simulated):
    _, y = simulated
    joint, arrays, params = log_joint(compile_text(MIXTURE), {"N": N, "y": y})
    assert joint.latents == ("theta", "m", "d", "sigma") and joint.discrete == ("z",)
    with jax.enable_x64(True):
        for seed in range(3):
            terms, conditionals, _, v = _point(joint, arrays, params, seed)
            theta, mu, sigma = np.asarray(v["theta"]), np.asarray(v["mu"]), float(v["sigma"])
            per_point = np.log(theta)[None, :] + stats.norm(mu[None, :], sigma).logpdf(y[:, None])
            expected = logsumexp(per_point, axis=1).sum()
            np.testing.assert_allclose(float(terms["z"]), expected, rtol=1e-10)
            conditional = np.exp(np.asarray(conditionals["z"]))
            np.testing.assert_allclose(conditional, np.exp(per_point - logsumexp(per_point, axis=1, keepdims=True)),
                                       rtol=1e-8, atol=1e-12)


def test_a_scalar_discrete_latent_sums_out_over_every_term():
    """One z shared by a whole vector (and a deterministic quantity of it): one log-sum-exp of the sums."""
    text = """
model switch {
  data y: real[3]
  mu: real[2] ~ normal(0, 3)
  z ~ bernoulli(0.3)
  shift = mu[z] + 1
  y ~ normal(shift, 0.5)
}
"""
    y = np.array([0.3, 1.1, -0.2])
    joint, arrays, params = log_joint(compile_text(text), {"y": y})
    with jax.enable_x64(True):
        terms, _, total, v = _point(joint, arrays, params)
        mu = np.asarray(v["mu"])
        per_value = np.log([0.7, 0.3]) + [stats.norm(mu[k] + 1, 0.5).logpdf(y).sum() for k in (0, 1)]
        np.testing.assert_allclose(float(terms["z"]), logsumexp(per_value), rtol=1e-10)
        prior = stats.norm(0, 3).logpdf(mu).sum()
        np.testing.assert_allclose(float(total), prior + logsumexp(per_value), rtol=1e-10)


def test_discrete_children_of_a_vector_of_discrete_latents():
    """Counts and categories observed through z[i]: categorical(phi[z]) has an event axis more."""
    text = """
model m {
  data N: int
  data w: int[N]
  data c: int[N]
  phi: unit[2, 3] ~ dirichlet([[1, 1, 1], [1, 1, 1]])
  lam: positive[2] ~ gamma(2, 1)
  z: int[N] ~ bernoulli(0.3)
  w ~ categorical(phi[z])
  c ~ poisson(lam[z])
}
"""
    w, c = np.array([0, 1, 2, 1, 0]), np.array([1, 4, 0, 2, 7])
    joint, arrays, params = log_joint(compile_text(text), {"N": 5, "w": w, "c": c})
    with jax.enable_x64(True):
        terms, _, _, v = _point(joint, arrays, params)
    phi, lam = np.asarray(v["phi"]), np.asarray(v["lam"])
    per_point = np.log([0.7, 0.3]) + np.log(phi[:, w].T) + stats.poisson(lam).logpmf(c[:, None])
    np.testing.assert_allclose(float(terms["z"]), logsumexp(per_point, axis=1).sum(), rtol=1e-10)


def _bayes_accuracy() -> float:
    """P(the most probable component is the true one) for the simulated mixture (both means, one scale)."""
    (a, b), (w0, w1) = MEANS, WEIGHTS
    cut = (a + b) / 2 + SCALE ** 2 * np.log(w0 / w1) / (b - a)
    return w0 * stats.norm(a, SCALE).cdf(cut) + w1 * stats.norm(b, SCALE).sf(cut)


def test_nuts_recovers_the_mixture_and_classifies_its_points(simulated):
    labels, y = simulated
    post = compile_text(MIXTURE).infer({"N": N, "y": y}, key=jax.random.key(1), num_chains=2, num_warmup=300,
                                       num_samples=300)
    assert int(post.divergences) == 0 and post.latents[-1] == "z"
    summary = post.summary()
    mu = np.stack([post.samples["m"] - post.samples["d"], post.samples["m"] + post.samples["d"]], -1)
    for k in (0, 1):
        draws = mu[..., k].reshape(-1)
        # the posterior sits within a few posterior sds of the truth; its mean within Monte-Carlo error of that
        assert abs(draws.mean() - MEANS[k]) < 4 * draws.std() + 4 * summary["m"]["mcse_mean"]
    assert summary["m"]["r_hat"] < 1.05 and summary["d"]["r_hat"] < 1.05
    z, probs = post.samples["z"], post.probabilities["z"]
    assert z.shape == (2, 300, N) and probs.shape == (2, 300, N, 2) and z.dtype.kind == "i"
    accuracy = _bayes_accuracy()
    threshold = accuracy - 4 * np.sqrt(accuracy * (1 - accuracy) / N)
    assert np.mean((z.mean(axis=(0, 1)) > 0.5) == labels) > threshold
    assert np.mean((probs[..., 1].mean(axis=(0, 1)) > 0.5) == labels) > threshold
    # the draws of z follow their conditional probabilities
    assert abs(z.mean() - probs[..., 1].mean()) < 4 * np.sqrt(0.25 / z.size) + 1e-3


def test_the_draws_file_holds_the_conditional_probabilities(tmp_path):
    """A scalar z: its draws and probabilities come back per draw and go into draws.npz."""
    prog = compile_text("model m {\n  data y: real[4]\n  mu ~ normal(0, 0.5)\n  z ~ bernoulli(0.5)\n"
                        "  y ~ normal(mu + 6 * z, 0.5)\n}\n")
    post = prog.infer({"y": [6.1, 5.5, 6.6, 5.9]}, num_chains=1, num_warmup=50, num_samples=50)
    probs = post.probabilities["z"]  # p(z = 0 | y) is about exp(-57)
    assert probs.shape == (1, 50, 2) and np.allclose(probs.sum(-1), 1) and probs[..., 1].min() > 0.999
    with np.load(write_posterior(post, tmp_path) / "draws.npz") as files:
        np.testing.assert_array_equal(files["z.probabilities"], probs)
        assert set(files["z"].reshape(-1)) == {1}


@pytest.mark.parametrize("text, data, error, words", [
    ("data y: real\n  k ~ poisson(3)\n  y ~ normal(k, 1)", {"y": 1.0}, GenSemanticError,
     "'k' is a discrete latent variable (int) with infinitely many values"),
    ("data y: real\n  a ~ bernoulli(0.5)\n  b ~ bernoulli(0.2 + 0.5 * a)\n  y ~ normal(b, 1)", {"y": 1.0},
     GenSemanticError, "the discrete latent 'b' depends on the discrete latent 'a'"),
    ("data y: real\n  a ~ bernoulli(0.5)\n  b ~ bernoulli(0.2)\n  y ~ normal(a + b, 1)", {"y": 1.0},
     GenSemanticError, "'y' depends on two discrete latents, 'a' and 'b'"),
    ("data y: real[3]\n  mu: real[2] ~ normal(0, 1)\n  z: int[3] ~ bernoulli(0.5)\n  y ~ normal(sum(mu[z]), 1)",
     {"y": [0.0, 1.0, 2.0]}, GenSemanticError, "combines several of its elements"),
    ("data y: real[3]\n  z: int[3] ~ bernoulli(0.5)\n  s = z[0] + 0.0\n  y ~ normal(s, 1)",
     {"y": [0.0, 1.0, 2.0]}, GenSemanticError, "indexes into a value that depends on it"),
    ("data y: real[2, 3]\n  mu: real[2] ~ normal(0, 1)\n  z: int[3] ~ bernoulli(0.5)\n  y ~ normal(mu[z], 1)",
     {"y": np.zeros((2, 3))}, GenSemanticError, "leading axes must be those of 'z'"),
    ("data y: real\n  s ~ normal(0, 1)\n  z ~ bernoulli(0.5)\n  w ~ uniform(0, 1 + z)\n  y ~ normal(w, s^2 + 1)",
     {"y": 0.0}, GenSemanticError, "the support of the latent 'w' depends on the discrete latent 'z'"),
    ("data y: real\n  z ~ bernoulli(0.5)\n  y ~ normal(z, 1)", {"y": 0.0}, GenDataError,
     "the only latents of 'm' are discrete (z)"),
    ("data y: real\n  s ~ normal(0, 1)\n  z ~ bernoulli(0.5)\n  w = 2 * z\n  y ~ normal(s, 1)\n  target += -w * s^2",
     {"y": 0.0}, GenSemanticError, "target (line 7) reads the discrete latent 'z', which inference sums out"),
])
def test_what_cannot_be_summed_out_is_refused_clearly(text, data, error, words):
    prog = compile_text(f"model m {{\n  {text}\n}}\n")
    with pytest.raises(error) as info:
        prog.infer(data, num_chains=1, num_warmup=10, num_samples=10)
    assert words in str(info.value)


def test_init_of_a_summed_out_latent_is_refused(simulated):
    _, y = simulated
    with pytest.raises(GenDataError, match="'z', a discrete latent that is summed out"):
        compile_text(MIXTURE).infer({"N": N, "y": y}, init={"z": np.zeros(N, int)}, num_chains=1)
