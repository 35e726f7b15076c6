"""Constrained types and flat priors: the log joint in unconstrained space (Jacobians included)
against numpyro's potential and hand formulas, NUTS posteriors against closed forms, data
checks, and the refusals (sampling an improper or restricted prior, a constrained type on a
mechanism)."""

from __future__ import annotations

import re
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro.distributions import constraints
from numpyro.infer.util import potential_energy
from scipy import stats

import gendsl
from gendsl.errors import GenDataError, GenRuntimeError, GenSemanticError, ImproperPriorWarning
from gendsl.inference import log_joint
from gendsl.numerics.diagnostics import summarize

TYPES = """
model typed {
  data y: real[4]
  mu: ordered[2] ~ normal(0, 5)
  sigma: real<lower=0> ~ normal(0, 2)
  b: real<lower=-1, upper=2>[2] ~ normal(0, 1)
  top: real<upper=3>
  pos: positive_ordered[2] ~ gamma(2, 1)
  th: simplex[3] ~ dirichlet([1, 2, 3])
  s: sum_to_zero[3] ~ normal(0, 1)
  L: cholesky_factor_corr[3] ~ lkj_cholesky(3, 2)
  R: corr_matrix[2]
  S: cov_matrix[2]
  y ~ normal(mu[0] + th[1] + s[2] + L[2, 1] + R[0, 1] + S[1, 1] + b[1] + top + pos[0], sigma)
}
"""
Y = [0.3, -1.2, 2.0, 0.7]


def typed_numpyro(y):
    def flat(name, constraint, shape):
        return numpyro.sample(name, dist.ImproperUniform(constraint, (), shape))

    mu = flat("mu", constraints.ordered_vector, (2,))
    numpyro.factor("mu_lp", dist.Normal(0, 5).log_prob(mu).sum())
    sigma = flat("sigma", constraints.positive, ())
    numpyro.factor("sigma_lp", dist.Normal(0, 2).log_prob(sigma))
    b = numpyro.sample("b", dist.ImproperUniform(constraints.interval(-1.0, 2.0), (2,), ()))
    numpyro.factor("b_lp", dist.Normal(0, 1).log_prob(b).sum())
    top = flat("top", constraints.less_than(3.0), ())
    pos = flat("pos", constraints.positive_ordered_vector, (2,))
    numpyro.factor("pos_lp", dist.Gamma(2, 1).log_prob(pos).sum())
    th = numpyro.sample("th", dist.Dirichlet(jnp.array([1.0, 2.0, 3.0])))
    s = flat("s", constraints.zero_sum(event_dim=1), (3,))
    numpyro.factor("s_lp", dist.Normal(0, 1).log_prob(s).sum())
    L = numpyro.sample("L", dist.LKJCholesky(3, 2.0))
    R = flat("R", constraints.corr_matrix, (2, 2))
    S = flat("S", constraints.positive_definite, (2, 2))
    loc = mu[0] + th[1] + s[2] + L[2, 1] + R[0, 1] + S[1, 1] + b[1] + top + pos[0]
    numpyro.sample("y", dist.Normal(loc, sigma), obs=y)


def compile_text(text: str) -> gendsl.Program:
    return gendsl.compile(gendsl.parse(text))


def zscore(draws, truth: float) -> float:
    s = summarize({"f": np.asarray(draws)})["f"]
    return (s["mean"] - truth) / s["mcse_mean"]


def test_log_joint_of_every_constrained_type_equals_numpyro_potential():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ImproperPriorWarning)
        joint, arrays, params = log_joint(compile_text(TYPES), {"y": Y})
    with jax.enable_x64(True):
        ours = jax.jit(lambda z: (joint.logdensity(z, arrays, params), joint.constrain(z, arrays, params)))
        theirs = jax.jit(lambda parts: -potential_energy(typed_numpyro, (jnp.asarray(Y),), {}, parts))
        for seed in range(4):
            z = jax.random.normal(jax.random.key(seed), (joint.dim,))
            parts = {b.name: z[b.offset:b.offset + b.size].reshape(b.unconstrained_shape) for b in joint.blocks}
            value, values = ours(z)
            np.testing.assert_allclose(value, theirs(parts), rtol=1e-10, atol=1e-10)
            assert np.diff(np.asarray(values["mu"]))[0] > 0 and 0 < values["pos"][0] < values["pos"][1]
            assert abs(float(values["s"].sum())) < 1e-12 and abs(float(values["th"].sum()) - 1) < 1e-12
            assert np.all((np.asarray(values["b"]) > -1) & (np.asarray(values["b"]) < 2)) and values["top"] < 3
            np.testing.assert_allclose(np.diag(np.asarray(values["R"])), 1.0, atol=1e-12)
            assert np.all(np.linalg.eigvalsh(np.asarray(values["S"])) > 0)


def test_bounded_real_log_density_is_the_hand_formula_with_its_jacobian():
    prog = compile_text("model m {\n  data lo: real\n  a: real<lower=0> ~ normal(1, 2)\n"
                        "  b: real<lower=lo, upper=lo + 3> ~ normal(0, 1)\n}\n")
    joint, arrays, params = log_joint(prog, {"lo": -0.5})
    with jax.enable_x64(True):
        for u in ([0.3, -1.1], [-2.0, 0.4], [1.7, 2.5]):
            z = jnp.asarray(u)
            a, t = np.exp(u[0]), 1 / (1 + np.exp(-u[1]))
            b = -0.5 + 3 * t
            expected = (stats.norm(1, 2).logpdf(a) + u[0]
                        + stats.norm(0, 1).logpdf(b) + np.log(3 * t * (1 - t)))
            np.testing.assert_allclose(float(joint.logdensity(z, arrays, params)), expected, rtol=1e-10)


def test_ordered_prior_recovers_the_moments_of_the_order_statistics():
    """mu: ordered[2] ~ normal(0, s): (min, max) of two iid N(0, s^2); E max = s / sqrt(pi)."""
    prog = compile_text("model m {\n  mu: ordered[2] ~ normal(0, 2)\n}\n")
    post = prog.infer({}, key=jax.random.key(1), num_chains=2, num_warmup=300, num_samples=300)
    mu = post.samples["mu"]
    assert np.all(mu[..., 0] < mu[..., 1])
    s = 2.0
    assert abs(zscore(mu[..., 1], s / np.sqrt(np.pi))) < 4 and abs(zscore(mu[..., 0], -s / np.sqrt(np.pi))) < 4
    assert abs(zscore(mu[..., 1] ** 2, s ** 2)) < 4  # E max^2 = s^2


def test_flat_simplex_with_a_target_term_is_a_dirichlet():
    """th: simplex[3] (flat: Dirichlet(1, 1, 1)) times th[0]^2 is Dirichlet(3, 1, 1)."""
    prog = compile_text("model m {\n  th: simplex[3]\n  target += 2 * log(th[0])\n}\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error", ImproperPriorWarning)  # flat on a simplex is uniform: proper
        post = prog.infer({}, key=jax.random.key(2), num_chains=2, num_warmup=300, num_samples=300)
    th = post.samples["th"]
    np.testing.assert_allclose(th.sum(-1), 1.0, atol=1e-10)
    for i, m in enumerate([0.6, 0.2, 0.2]):
        assert abs(zscore(th[..., i], m)) < 4
    assert abs(zscore((th[..., 0] - 0.6) ** 2, 0.6 * 0.4 / 6)) < 4


BATCHED = """
model batched {
  A: simplex[2, 3]
  o: ordered[2, 3] ~ normal(0, 2)
  s: sum_to_zero[2, 3] ~ normal(0, 1)
  target += 2 * log(A[0, 0]) + log(A[1, 2])
}
"""


def batched_numpyro():
    A = numpyro.sample("A", dist.ImproperUniform(constraints.simplex, (2,), (3,)))
    numpyro.factor("A_lp", 2 * jnp.log(A[0, 0]) + jnp.log(A[1, 2]))
    o = numpyro.sample("o", dist.ImproperUniform(constraints.ordered_vector, (2,), (3,)))
    numpyro.factor("o_lp", dist.Normal(0, 2).log_prob(o).sum())
    s = numpyro.sample("s", dist.ImproperUniform(constraints.zero_sum(event_dim=1), (2,), (3,)))
    numpyro.factor("s_lp", dist.Normal(0, 1).log_prob(s).sum())


def test_batched_vector_types_are_rows_of_constrained_vectors():
    """Stan's array[J] simplex[K] is simplex[J, K] (J rows, each a simplex; also ordered and
    sum_to_zero): the log joint is numpyro's with a batch of 2, and with the target term the rows of
    A are Dirichlet(3, 1, 1) and Dirichlet(1, 1, 2)."""
    prog = compile_text(BATCHED)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ImproperPriorWarning)
        joint, arrays, params = log_joint(prog, {})
        post = prog.infer({}, key=jax.random.key(5), num_chains=2, num_warmup=300, num_samples=400)
    with jax.enable_x64(True):
        theirs = jax.jit(lambda parts: -potential_energy(batched_numpyro, (), {}, parts))
        z = jax.random.normal(jax.random.key(0), (joint.dim,))
        parts = {b.name: z[b.offset:b.offset + b.size].reshape(b.unconstrained_shape) for b in joint.blocks}
        np.testing.assert_allclose(joint.logdensity(z, arrays, params), theirs(parts), rtol=1e-10)
    A, o, s = post.samples["A"], post.samples["o"], post.samples["s"]
    assert A.shape[-2:] == (2, 3) and np.all(np.diff(o, axis=-1) > 0)
    np.testing.assert_allclose(A.sum(-1), 1.0, atol=1e-10)
    np.testing.assert_allclose(s.sum(-1), 0.0, atol=1e-10)
    for (i, j), m in {(0, 0): 0.6, (0, 1): 0.2, (1, 0): 0.25, (1, 2): 0.5}.items():
        assert abs(zscore(A[..., i, j], m)) < 4, (i, j)


def test_flat_prior_posterior_is_the_likelihood():
    """mu flat, y ~ normal(mu, sigma) with sigma known: mu | y ~ N(mean(y), sigma^2 / n)."""
    y = np.random.default_rng(0).normal(1.0, 2.0, 40)
    prog = compile_text("model m {\n  data N: int\n  data y: real[N]\n  mu: real\n  y ~ normal(mu, 2)\n}\n")
    with pytest.warns(ImproperPriorWarning):
        post = prog.infer({"N": 40, "y": y}, key=jax.random.key(3), num_chains=2, num_warmup=300, num_samples=300)
    mu = post.samples["mu"]
    assert abs(zscore(mu, y.mean())) < 4 and abs(zscore((mu - y.mean()) ** 2, 4.0 / 40)) < 4


def test_flat_bound_on_another_latent_is_uniform_on_the_triangle():
    """a flat on (0, 1), b flat on (0, 1 - a): uniform on the triangle, so E a = E b = 1/3 and
    E b^2 = 1/6 (b's marginal is 2 (1 - b)); a missing log(1 - a) Jacobian would tilt a towards 1,
    and draws mapped back through a fixed bound would shrink b."""
    prog = compile_text("model m {\n  a: real<lower=0, upper=1>\n  b: real<lower=0, upper=1 - a>\n}\n")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ImproperPriorWarning)
        post = prog.infer({}, key=jax.random.key(4), num_chains=2, num_warmup=300, num_samples=500)
    a, b = post.samples["a"], post.samples["b"]
    assert np.all((b > 0) & (a + b < 1))
    assert abs(zscore(a, 1 / 3)) < 4 and abs(zscore(b, 1 / 3)) < 4 and abs(zscore(b ** 2, 1 / 6)) < 4


def test_constrained_data_are_checked_when_bound():
    prog = compile_text("model m {\n  data K: int\n  data th: simplex[K]\n  data o: ordered[3]\n"
                        "  data n: int<lower=1>[2]\n  data w: real<lower=0, upper=K>[2]\n  a ~ normal(0, 1)\n}\n")
    good = {"K": 3, "th": [0.2, 0.3, 0.5], "o": [-1.0, 0.0, 2.0], "n": [1, 4], "w": [0.0, 3.0]}
    log_joint(prog, good)
    for key, value, words in [("th", [0.2, 0.3, 0.6], "not a simplex"), ("o", [0.0, -1.0, 2.0], "not increasing"),
                              ("n", [0, 2], "holds 0 at index [0], below the bound 1"),
                              ("w", [1.0, 3.5], "holds 3.5 at index [1], above the bound 3")]:
        with pytest.raises(GenDataError, match=re.escape(words)):
            log_joint(prog, {**good, key: value})


def test_sampling_an_improper_or_restricted_prior_is_refused():
    for text, words in [("model m {\n  x: real\n}\n", "improper flat prior"),
                        ("model m {\n  x: ordered[2] ~ normal(0, 1)\n}\n", "restricted to the support of its type")]:
        prog = compile_text(text)
        with pytest.raises(GenRuntimeError, match=words):
            prog.sample(prog.init(jax.random.key(0)), jax.random.key(0), 3)


@pytest.mark.parametrize("text, words", [
    ("x: ordered[2] ~ energy(sum(x^2))", "constrained type ordered[2]; a constrained type takes a leaf"),
    ("x: real<lower=-1> ~ gamma(2, 2)", "gamma() draws positive values, but 'x' is declared real<lower=-1>"),
    ("k: int", "a flat prior is for continuous parameters"),
    ("x: positive ~ normal(0, 1)", "declare 'x: real<lower=0>'"),
])
def test_type_errors(text, words):
    with pytest.raises(GenSemanticError, match=re.escape(words)):
        gendsl.parse(f"model m {{\n  {text}\n}}\n")


def test_dirichlet_on_a_simplex_type_samples_and_keeps_its_support():
    """A type that is the distribution's own support changes nothing: it still samples."""
    prog = compile_text("model m {\n  th: simplex[3] ~ dirichlet([1, 2, 3])\n}\n")
    draws = prog.sample({}, jax.random.key(0), 5)
    np.testing.assert_allclose(np.asarray(draws["th"]).sum(-1), 1.0, atol=1e-5)


def test_bounds_on_data_only_check_the_values():
    """On data a bound is a check (Stan's data block), never a change of density or support."""
    text = ("model m {\n  data N: int<lower=2>\n  data k: int<lower=0>[N]\n  data y: real<lower=-5>[N]\n"
            "  lam ~ gamma(2, 1)\n  k ~ poisson(lam)\n  y ~ gamma(2, lam)\n}\n")
    prog, plain = compile_text(text), compile_text(re.sub(r"<lower=-?\d>", "", text))
    data = {"N": 2, "k": [1, 3], "y": [0.5, 2.0]}
    (joint, arrays, params), (ref, ref_arrays, ref_params) = log_joint(prog, data), log_joint(plain, data)
    with jax.enable_x64(True):
        z = jnp.array([0.4])
        np.testing.assert_allclose(joint.logdensity(z, arrays, params), ref.logdensity(z, ref_arrays, ref_params))
    draws = prog.sample({}, jax.random.key(0), 3, {"N": 2})  # observed: drawn from the distribution itself
    assert draws["y"].shape == (3, 2) and prog.log_prob_kind == "exact"
    with pytest.raises(GenDataError, match=re.escape("'N' is declared int<lower=2> but is 1")):
        log_joint(prog, {"N": 1, "k": [1], "y": [0.5]})
    with pytest.raises(GenDataError, match="below the bound 0"):
        log_joint(prog, {**data, "k": [-1, 3]})
