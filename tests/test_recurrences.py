"""Recurrences with scan(f, init, xs, ...): the log joint of ARMA and GARCH models against plain
Python loops, one lax.scan whatever the length, shape errors at their source, and a posterior."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import gendsl
from gendsl.errors import GenSemanticError
from gendsl.inference import log_joint

#: Stan's arma11 (posteriordb), the recursion of the errors written once
ARMA = """
model arma11 {
  data T: int
  data y: real[T]
  mu ~ normal(0, 10)
  phi ~ normal(0, 2)
  theta: real<lower=-1, upper=1> ~ normal(0, 2)
  sigma ~ half_cauchy(2.5)
  fn step(err, x, mu, phi, theta) = x[0] - (mu + phi * x[1] + theta * err)
  err1 = y[0] - (mu + phi * mu)
  err = scan(step, err1, transpose([y[1:], y[:T - 1]]), mu, phi, theta)
  target += logpdf(normal(0, sigma), err1) + sum(logpdf(normal(0, sigma), err))
}
"""

#: Stan's garch11: the variance recursion is non-linear in the data
GARCH = """
model garch11 {
  data T: int
  data y: real[T]
  data sigma1: real
  mu ~ normal(0, 10)
  alpha0: real<lower=0> ~ normal(0, 10)
  alpha1 ~ uniform(0, 1)
  beta1: real<lower=0, upper=1 - alpha1> ~ uniform(0, 1 - alpha1)
  fn next_var(v, y_prev, mu, a0, a1, b1) = a0 + a1 * (y_prev - mu) ^ 2 + b1 * v
  var = scan(next_var, sigma1 ^ 2, y[:T - 1], mu, alpha0, alpha1, beta1)
  y0 ~ normal(mu, sigma1)
  target += sum(logpdf(normal(mu, sqrt(var)), y[1:]))
}
"""


def arma_loop(y, mu, phi, theta, sigma):
    err = [y[0] - (mu + phi * mu)]
    for t in range(1, len(y)):
        err.append(y[t] - (mu + phi * y[t - 1] + theta * err[-1]))
    return np.sum(stats.norm.logpdf(err, 0, sigma))


def garch_loop(y, sigma1, mu, a0, a1, b1):
    var, total = sigma1**2, 0.0
    for t in range(1, len(y)):
        var = a0 + a1 * (y[t - 1] - mu) ** 2 + b1 * var
        total += stats.norm.logpdf(y[t], mu, np.sqrt(var))
    return total


def simulate_arma(T, seed=0):
    rng = np.random.default_rng(seed)
    e, y = rng.normal(0, 0.5, T), np.zeros(T)
    y[0] = 1 + e[0]
    for t in range(1, T):
        y[t] = 1 + 0.6 * y[t - 1] + 0.3 * e[t - 1] + e[t]
    return y


def compiled(text):
    return gendsl.compile(gendsl.parse(text))


def test_arma_log_joint_is_the_loop():
    y = simulate_arma(60)
    joint, arrays, params = log_joint(compiled(ARMA), {"T": 60, "y": y.tolist()})
    with jax.enable_x64(True):
        run = jax.jit(lambda z: (joint.constrain(z, arrays, params), joint.terms(z, arrays, params)))
        for seed in range(4):
            out, terms = run(jax.random.normal(jax.random.key(seed), (joint.dim,)))
            v = {k: float(out[k]) for k in ("mu", "phi", "theta", "sigma")}
            target = next(float(val) for k, val in terms.items() if k.startswith("target"))
            np.testing.assert_allclose(target, arma_loop(y, **v), rtol=1e-10)
            assert out["err"].shape == (59,)


def test_garch_log_joint_is_the_loop():
    rng = np.random.default_rng(1)
    y = rng.normal(5, 2, 40)
    data = {"T": 40, "y": y.tolist(), "sigma1": 1.5, "y0": float(y[0])}
    joint, arrays, params = log_joint(compiled(GARCH), data)
    with jax.enable_x64(True):
        run = jax.jit(lambda z: (joint.constrain(z, arrays, params), joint.terms(z, arrays, params)))
        for seed in range(4):
            out, terms = run(jax.random.normal(jax.random.key(seed), (joint.dim,)))
            target = next(float(val) for k, val in terms.items() if k.startswith("target"))
            expected = garch_loop(y, 1.5, *(float(out[k]) for k in ("mu", "alpha0", "alpha1", "beta1")))
            np.testing.assert_allclose(target, expected, rtol=1e-10)


def test_a_recurrence_is_one_scan_whatever_its_length():
    sizes = []
    for T in (10, 1000):
        joint, arrays, params = log_joint(compiled(ARMA), {"T": T, "y": simulate_arma(T).tolist()})
        jaxpr = jax.make_jaxpr(lambda z: joint.logdensity(z, arrays, params))(jnp.zeros(joint.dim))
        sizes.append(len(str(jaxpr).splitlines()))
        assert "scan" in str(jaxpr)
    assert abs(sizes[0] - sizes[1]) <= 2, sizes  # the program does not grow with T


@pytest.mark.parametrize("line,words", [
    ("e = scan(step, 0.0, m, 1.0)", "returns a state of shape [3] but init has shape scalar"),
    ("e = scan(step, 0.0, y)", "passes f(state, x) (2 arguments), but 'step' takes 3"),
    ("e = scan(step, 0.0, 1.0, 2.0)", "xs must have a first axis"),
    ("e = scan(nope, 0.0, y, 1.0)", "nope"),
])
def test_scan_errors_point_at_the_call(line, words):
    text = (f"model m {{\n  data y: real[5]\n  data m: real[5, 3]\n  fn step(c, x, a) = a * c + x\n  {line}\n"
            f"  target += sum(e)\n}}\n")
    with pytest.raises(GenSemanticError, match=words.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")
                       .replace("]", r"\]")) as info:
        compiled(text)
    assert info.value.span.line == 5


def test_arma_posterior_recovers_the_simulation():
    y = simulate_arma(150, seed=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        post = compiled(ARMA).infer({"T": 150, "y": y.tolist()}, key=jax.random.key(0), num_chains=2,
                                    num_samples=300, num_warmup=300, progress=False)
    s = post.summary()
    for name, truth in (("mu", 1.0), ("phi", 0.6), ("theta", 0.3), ("sigma", 0.5)):
        assert abs(s[name]["mean"] - truth) < 4 * s[name]["sd"] + 0.05, (name, s[name]["mean"], s[name]["sd"])
    assert int(post.divergences) == 0 and max(s["phi"]["r_hat"], s["theta"]["r_hat"]) < 1.05
