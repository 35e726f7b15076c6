"""User functions ``fn NAME(ARGS) = EXPR``: a call means the inlined expression (same log
density), its shape follows from the arguments at each call, and misuse is an error at the call."""

from __future__ import annotations

import warnings

import jax
import numpy as np
import pytest

import gendsl
from gendsl.errors import GenSemanticError, GenSyntaxError, ImproperPriorWarning
from gendsl.inference import log_joint

WITH_FUNCTIONS = """
model with_functions {
  data N: int
  data x: real[N]
  data y: real[N]
  fn line(a, b, u) = a + b * u
  fn sq(u) = u * u
  fn scale(s) = sq(s) + 0.1
  a ~ normal(0, 5)
  b ~ normal(line(0, 1, 1), 2)
  s: real<lower=0>
  mu = line(a, b, x)
  y ~ normal(mu, scale(s))
  target += -0.5 * sq(a - b)
}
"""

INLINED = """
model inlined {
  data N: int
  data x: real[N]
  data y: real[N]
  a ~ normal(0, 5)
  b ~ normal(0 + 1 * 1, 2)
  s: real<lower=0>
  mu = a + b * x
  y ~ normal(mu, s * s + 0.1)
  target += -0.5 * ((a - b) * (a - b))
}
"""


def _log_density(text, data, z):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ImproperPriorWarning)
        joint, arrays, params = log_joint(gendsl.compile(gendsl.parse(text)), data)
    return joint.logdensity(z, arrays, params)


def test_a_user_function_means_its_inlined_expression():
    data = {"N": 4, "x": [0.0, 1.0, 2.0, 3.0], "y": [0.3, 1.1, 2.5, 2.9]}
    for seed in range(3):
        z = jax.random.normal(jax.random.key(seed), (3,))
        np.testing.assert_allclose(_log_density(WITH_FUNCTIONS, data, z), _log_density(INLINED, data, z), rtol=1e-6)


def test_a_user_function_inside_an_energy_means_the_inlined_energy():
    def energy_model(body):
        return f"""
model banana {{
  fn bend(u, v) = (v - u^2 / 4)^2 / 2
  x: real[2] ~ energy({body}, sampler=nuts())
}}
"""
    model = gendsl.parse(energy_model("x[0]^2 / 8 + bend(x[0], x[1])"))
    assert model["x"].type.shape == (2,)
    assert gendsl.parse(energy_model("x[0]^2 / 8 + (x[1] - x[0]^2 / 4)^2 / 2"))["x"].type == model["x"].type


def test_the_shape_of_a_call_follows_from_its_arguments():
    model = gendsl.parse("""
model shapes {
  data X: real[5, 3]
  data w: real[3]
  fn affine(A, v, c) = dot(A, v) + c
  one = affine(X, w, 1.0)
  many = affine(X, w, [1.0, 2.0, 3.0, 4.0, 5.0])
  s = affine(w, w, 0.0)
}
""")
    assert model["one"].type.shape == (5,)
    assert model["many"].type.shape == (5,)
    assert model["s"].type.shape == ()


@pytest.mark.parametrize("lines, words", [
    (["fn f(x) = x + 1", "y = f(1, 2)"], "f() takes 1 argument(s) (x), got 2"),
    (["fn f(x) = x + 1", "y = f(x=1)"], "by position"),
    (["fn f(x) = x + 1", "y = g(1)"], "unknown function 'g'"),
    (["fn f(x) = x + mu", "y = f(1)"], "'mu' is not one of its arguments"),
    (["fn normal(x) = x", "y = 1"], "'normal' is a distribution"),
    (["fn f(x) = [x, x]", "y = f([1.0, 2.0]) + [1.0, 2.0, 3.0]"], "do not broadcast"),
    (["fn f(x) = g(x)", "fn g(x) = x", "y = f(1)"], "defined later (line"),
    (['fn f(t, y) = y + "a"', "y = ode(f, 1.0, 0.0, [1.0])"], "a string cannot be used as a number"),
    (["fn f(t, y, k) = -k * y", "y = ode(f, 1.0, 0.0, [1.0])"], "'f' takes 3 (t, y, k)"),
])
def test_misused_functions_are_errors(lines, words):
    body = "\n  ".join(["mu ~ normal(0, 1)", *lines])
    with pytest.raises(GenSemanticError, match=None) as err:
        gendsl.parse(f"model m {{\n  {body}\n}}")
    assert words in str(err.value)


def test_an_argument_named_twice_is_a_syntax_error():
    with pytest.raises(GenSyntaxError, match="named twice"):
        gendsl.parse("model m {\n  fn f(x, x) = x\n  mu ~ normal(0, 1)\n}")
