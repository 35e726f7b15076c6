"""``target +=``, ``logpdf``, ``log_mix``, the reductions with an axis, comparisons, slicing, and
the check of integer data used as indices (before any sampling)."""

from __future__ import annotations

import json
import re
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats
from scipy.special import logsumexp

import gendsl
from gendsl.cli import main
from gendsl.errors import GenDataError, GenRuntimeError, GenSemanticError, ImproperPriorWarning
from gendsl.inference import log_joint


def compile_text(text: str) -> gendsl.Program:
    return gendsl.compile(gendsl.parse(text))


SAMPLED = """
model sampled {
  data N: int
  data y: real[N]
  mu ~ normal(0, 1)
  sigma ~ gamma(2, 2)
  y ~ normal(mu, sigma)
}
"""

TARGETED = """
model targeted {
  data N: int
  data y: real[N]
  mu: real
  sigma: real<lower=0>
  target += logpdf(normal(0, 1), mu) + logpdf(gamma(2, 2), sigma)
  target += sum(logpdf(normal(mu, sigma), y))
}
"""
Y = [0.4, -1.3, 2.2, 0.9, 1.1]


def test_target_gives_the_log_density_of_the_equivalent_sample_statements():
    data = {"N": 5, "y": Y}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ImproperPriorWarning)
        ours, arrays_t, params_t = log_joint(compile_text(TARGETED), data)
    ref, arrays_s, params_s = log_joint(compile_text(SAMPLED), data)
    assert ours.dim == ref.dim == 2
    with jax.enable_x64(True):
        for seed in range(4):
            z = jax.random.normal(jax.random.key(seed), (2,))
            np.testing.assert_allclose(ours.logdensity(z, arrays_t, params_t), ref.logdensity(z, arrays_s, params_s),
                                       rtol=1e-12)
        assert set(ours.terms(z, arrays_t, params_t)) == {"mu", "sigma", "target (line 7)", "target (line 8)"}
    # log_prob of given values: the same sum, per example
    values = {"N": 5, "y": np.array([Y, Y[::-1]]), "mu": np.array([0.1, -0.4]), "sigma": np.array([0.8, 1.7])}
    np.testing.assert_allclose(compile_text(TARGETED).log_prob({}, values), compile_text(SAMPLED).log_prob({}, values),
                               rtol=1e-5)


def test_a_mixture_written_with_target_and_log_mix_is_the_hand_formula():
    text = """
model mix {
  data N: int
  data y: real[N]
  mu: ordered[2] ~ normal(0, 5)
  w ~ beta(2, 2)
  target += sum(log_mix(w, logpdf(normal(mu[0], 1), y), logpdf(normal(mu[1], 1), y)))
  lps = logsumexp([log(w) + logpdf(normal(mu[0], 1), y), log1p(-w) + logpdf(normal(mu[1], 1), y)])
  lps2 = log_mix([w, 1 - w], [logpdf(normal(mu[0], 1), y), logpdf(normal(mu[1], 1), y)])
}
"""
    y = np.array([-2.1, -1.7, 1.9, 2.4, 2.0])
    joint, arrays, params = log_joint(compile_text(text), {"N": 5, "y": y})
    with jax.enable_x64(True):
        z = jnp.array([0.3, 0.5, -0.2])
        values = joint.constrain(z, arrays, params)
        mu, w = np.asarray(values["mu"]), float(values["w"])
        per_obs = np.logaddexp(np.log(w) + stats.norm(mu[0], 1).logpdf(y), np.log1p(-w) + stats.norm(mu[1], 1).logpdf(y))
        assert values["lps"].shape == (5,)  # logsumexp of a list combines the items, per observation
        np.testing.assert_allclose(values["lps"], per_obs, rtol=1e-12)
        np.testing.assert_allclose(values["lps2"], per_obs, rtol=1e-12)
        terms = joint.terms(z, arrays, params)
        np.testing.assert_allclose(terms["target (line 7)"], per_obs.sum(), rtol=1e-12)


def test_logpdf_is_elementwise_for_any_leaf():
    text = """
model lp {
  data y: real[3]
  data k: int[3]
  a ~ normal(0, 1)
  t = logpdf(student_t(3, a, 2), y)
  p = logpdf(poisson(exp(a)), k)
  d = logpdf(dirichlet([1, 2, 3]), [0.2, 0.3, 0.5])
  m = logpdf(multivariate_normal([a, 0], eye(2)), [[0, 1], [1, 2]])
}
"""
    y, k = np.array([-1.0, 0.5, 3.0]), np.array([0, 2, 5])
    draws = compile_text(text).sample({}, jax.random.key(0), 4, {"y": y, "k": k})
    for i, a in enumerate(np.asarray(draws["a"])):
        np.testing.assert_allclose(draws["t"][i], stats.t(3, a, 2).logpdf(y), rtol=1e-4)
        np.testing.assert_allclose(draws["p"][i], stats.poisson(np.exp(a)).logpmf(k), rtol=1e-4)
        np.testing.assert_allclose(draws["m"][i], stats.multivariate_normal([a, 0]).logpdf([[0, 1], [1, 2]]), rtol=1e-4)
    assert draws["d"].shape == (4,)
    np.testing.assert_allclose(draws["d"], stats.dirichlet([1, 2, 3]).logpdf([0.2, 0.3, 0.5]), rtol=1e-4)


def test_reductions_comparisons_and_slices_match_numpy():
    text = """
model ex {
  data X: real[3, 4]
  data K: int
  a ~ normal(0, 1)
  col = X[:, 1]
  head = X[0, 0:K]
  tail = X[1, 2:]
  block = X[1:3, :2]
  s0 = sum(X, axis=0)
  m1 = mean(X, axis=-1)
  l1 = logsumexp(X, axis=1)
  top = max(X)
  low = min(X, axis=0)
  pair = max(X[0], X[1])
  cs = cumsum(X[2])
  cs1 = cumsum(X, axis=1)
  big = X > 0.5
  eq = (X[0] == X[0]) + (X[0] != X[0])
  both = (X > 0 and X < 1) + (X < -1 or X > 1)
}
"""
    X = np.random.default_rng(1).normal(size=(3, 4))
    d = {k: np.asarray(v)[0] for k, v in compile_text(text).sample({}, jax.random.key(0), 2, {"X": X, "K": 3}).items()}
    expected = {"col": X[:, 1], "head": X[0, 0:3], "tail": X[1, 2:], "block": X[1:3, :2], "s0": X.sum(0),
                "m1": X.mean(-1), "l1": logsumexp(X, axis=1), "top": X.max(), "low": X.min(0),
                "pair": np.maximum(X[0], X[1]), "cs": np.cumsum(X[2]), "cs1": np.cumsum(X, axis=1),
                "big": (X > 0.5).astype(float), "eq": np.ones(4),
                "both": ((X > 0) & (X < 1)).astype(float) + ((X < -1) | (X > 1)).astype(float)}
    for name, value in expected.items():
        assert d[name].shape == value.shape, name
        np.testing.assert_allclose(d[name], value, rtol=1e-5, err_msg=name)


def test_stan_diagonal_matrix_functions_match_numpy():
    """diag_pre_multiply scales rows (Stan's; tau * L would scale columns), diag_post_multiply columns."""
    text = """
model ex {
  data v: real[3]
  data M: real[3, 3]
  a ~ normal(0, 1)
  d = diag_matrix(v)
  pre = diag_pre_multiply(v, M)
  post = diag_post_multiply(M, v)
}
"""
    v, M = np.array([0.5, 2.0, -1.0]), np.random.default_rng(2).normal(size=(3, 3))
    d = {k: np.asarray(x)[0] for k, x in compile_text(text).sample({}, jax.random.key(0), 1, {"v": v, "M": M}).items()}
    for name, value in {"d": np.diag(v), "pre": np.diag(v) @ M, "post": M @ np.diag(v)}.items():
        np.testing.assert_allclose(d[name], value, rtol=1e-6, err_msg=name)


HIER = """
model hier {
  data N: int
  data J: int
  data g: int[N]
  data y: real[N]
  theta: real[J] ~ normal(0, 1)
  y ~ normal(theta[g], 1)
}
"""


@pytest.mark.parametrize("g, words", [
    ([1, 2, 3, 3], "'g' indexes an axis of length 3 in 'theta[g]' but g holds 3 at index [2] (valid: 0 to 2); "
                   "indices are 0-based: subtract 1 from 1-based ones"),
    ([0, -1, 2, 1], "but g holds -1 at index [1] (valid: 0 to 2)"),
])
def test_an_out_of_range_data_index_is_an_error_before_sampling(g, words):
    prog = compile_text(HIER)
    data = {"N": 4, "J": 3, "g": g, "y": [0.1, 0.2, 0.3, 0.4]}
    with pytest.raises(GenDataError, match=re.escape(words)) as err:
        prog.infer(data, num_chains=1, num_warmup=10, num_samples=10)
    assert ":8:20:" in str(err.value)  # at the index itself: theta[g]
    with pytest.raises(GenDataError, match=re.escape(words)):
        prog.log_prob({}, {**data, "theta": [0.0, 0.0, 0.0]})


def test_a_one_based_index_written_with_its_offset_is_checked_with_it():
    prog = compile_text(HIER.replace("theta[g]", "theta[g - 1]"))
    data = {"N": 4, "J": 3, "g": [1, 2, 3, 3], "y": [0.1, 0.2, 0.3, 0.4]}
    log_joint(prog, data)  # 1..J minus 1: in range
    with pytest.raises(GenDataError, match=re.escape("but g-1 holds -1 at index [0]")):
        log_joint(prog, {**data, "g": [0, 1, 2, 2]})


def test_an_int_input_index_or_slice_end_is_checked_against_its_axis():
    prog = compile_text("model m {\n  data J: int\n  data K: int\n  x: real[J] ~ normal(0, 1)\n  h = x[0:K]\n}\n")
    with pytest.raises(GenDataError, match=re.escape("with K = 5, the slice bound K = 5 in 'x[0:K]' is outside 0 to 3")):
        log_joint(prog, {"J": 3, "K": 5})


def test_target_terms_are_in_the_plan_and_sampling_them_is_refused():
    prog = compile_text("model m {\n  a ~ normal(0, 1)\n  target += -a^2\n}\n")
    assert any(line.startswith("target") and "factor" in line and "+= -a^2" in line for line in prog.describe().splitlines())
    with pytest.raises(GenRuntimeError, match=re.escape("'target +=' (target (line 3))")):
        prog.sample({}, jax.random.key(0), 2)


@pytest.mark.parametrize("stmt, words", [
    ("m = log_sum_exp(v)", "unknown function 'log_sum_exp'; Stan's log_sum_exp is written logsumexp(x)"),
    ("m = normal_lpdf(v)", "Stan's normal_lpdf(y | ...) is written logpdf(normal(...), y)"),
    ("m = normal(0, 1)", "(normal is a distribution, not a function; its log-density is logpdf(normal(...), y))"),
    ("m = logpdf(exp(1), v)", "logpdf's first argument must be a distribution such as normal(0, 1), got 'exp(1)'"),
    ("m = sum(v, axis=2)", "sum(): axis 2 is out of range for shape [3]"),
    ("m = exp(v, axis=0)", "exp() has no argument 'axis='"),
    ("m = v[1:] + v[:J]", "shapes [J-1] and [J] do not broadcast"),
    ("m = v[J - 2:J] + w[:2] + v[J:J - 1]", "the slice 'J:J - 1' is empty"),
    ("m = v[1:w[0]]", "a slice bound must be an integer literal or an int input (with an integer offset, T - 1)"),
    ("m = v[0:J] + w[0:4]", "the slice '0:4' runs past the end of an axis of length 3"),
    ("target += undefined_thing", "undefined name 'undefined_thing'"),
    ("m = diag_pre_multiply(w[:2], transpose([w, w]))", "the vector's length 2 is not the matrix's number of rows ([3, 2])"),
])
def test_expression_errors(stmt, words):
    text = f"model m {{\n  data J: int\n  v: real[J] ~ normal(0, 1)\n  w: real[3] ~ normal(0, 1)\n  {stmt}\n}}\n"
    if "J" not in stmt:
        text = text.replace("real[J]", "real[3]")
    with pytest.raises(GenSemanticError, match=re.escape(words)):
        gendsl.parse(text)


def test_gendsl_infer_reports_a_bad_index_before_sampling(tmp_path, capsys):
    (tmp_path / "hier.gen").write_text(HIER)
    (tmp_path / "d.json").write_text(json.dumps({"N": 4, "J": 3, "g": [1, 2, 3, 3], "y": [0.1, 0.2, 0.3, 0.4]}))
    code = main(["infer", str(tmp_path / "hier.gen"), "--data", str(tmp_path / "d.json"), "--out", str(tmp_path / "post"),
                 "--chains", "1", "--samples", "10", "--warmup", "10"])
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err
    assert "hier.gen:8:20: error: 'g' indexes an axis of length 3 in 'theta[g]' but g holds 3" in err
    assert not (tmp_path / "post" / "draws.npz").exists()


def test_slices_with_symbolic_lengths_write_a_recurrence_vectorised():
    """AR(1): e = y[1:] - mu - phi * y[:T - 1] has shape [T-1]; the log joint is the hand formula."""
    text = """
model ar {
  data T: int
  data y: real[T]
  mu ~ normal(0, 1)
  phi: real<lower=-1, upper=1>
  e = y[1:] - mu - phi * y[:T - 1]
  target += sum(logpdf(normal(0, 0.5), e))
}
"""
    y = np.array([0.2, 0.9, 0.4, 1.3, 0.8])
    prog = compile_text(text)
    assert prog.model["e"].type.shape == ("T-1",)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ImproperPriorWarning)
        joint, arrays, params = log_joint(prog, {"T": 5, "y": y})
    with jax.enable_x64(True):
        for u in ([0.1, 0.3], [-0.5, -1.2]):
            mu, t = u[0], 1 / (1 + np.exp(-u[1]))
            phi = -1 + 2 * t
            e = y[1:] - mu - phi * y[:-1]
            expected = stats.norm(0, 1).logpdf(mu) + np.log(2 * t * (1 - t)) + stats.norm(0, 0.5).logpdf(e).sum()
            np.testing.assert_allclose(float(joint.logdensity(jnp.asarray(u), arrays, params)), expected, rtol=1e-10)
    with pytest.raises(GenDataError, match=re.escape("'e' (real[T-1]) would be empty")):
        log_joint(prog, {"T": 1, "y": [0.0]})
