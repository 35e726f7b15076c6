"""Continuous flows (closed form for a linear field, Hutchinson vs exact trace, training)
and implicit generators (adversarial training lowers the energy distance; no likelihood)."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.scipy as jsp
import numpy as np
import pytest

import gendsl
from gendsl.data import builtin
from gendsl.errors import GenRuntimeError
from gendsl.metrics import energy_distance


def compile_text(body: str) -> gendsl.Program:
    return gendsl.compile(gendsl.parse("model m {\n" + body + "\n}"))


def mechanism(prog: gendsl.Program, name: str = "x"):
    return prog.lowered().node(name).mechanism


@pytest.fixture(scope="module")
def moons():
    return builtin("moons", 3000, seed=0).arrays["x"]


# -- continuous flows --------------------------------------------------------------------------------


def test_linear_field_matches_closed_form():
    """v(y) = A y + b: x = e^A z + A^{-1}(e^A - I) b and log p(x) = log N(z; 0, I) - tr(A)."""
    prog = compile_text("data x: real[2]\nx ~ pushforward(normal(0, 1), cnf(net=mlp(hidden=[]), rtol=1e-6, atol=1e-6))")
    assert prog.log_prob_kind == "exact"
    a = jnp.array([[0.3, -0.8], [0.5, 0.2]])
    b = jnp.array([0.4, -0.3])
    weight = jnp.concatenate([a, jnp.zeros((2, 1))], axis=1)  # no dependence on t
    linear = prog.init(jax.random.key(0))["x"]
    params = {"x": eqx.tree_at(lambda p: (p.layers[0].weight, p.layers[0].bias), linear, (weight, b))}

    z = jax.random.normal(jax.random.key(1), (64, 2))
    expm = jsp.linalg.expm(a)
    shift = jnp.linalg.solve(a, (expm - jnp.eye(2)) @ b)
    x = z @ expm.T + shift
    expected = jax.scipy.stats.norm.logpdf(z).sum(-1) - jnp.trace(a)
    np.testing.assert_allclose(prog.log_prob(params, {"x": x}), expected, atol=1e-3)
    pushed, _ = mechanism(prog).transform(params["x"], z, None)
    np.testing.assert_allclose(pushed, x, atol=1e-3)


def test_hutchinson_agrees_with_exact_trace_within_its_standard_error():
    text = ("data x: real[3]\nx ~ pushforward(normal(0, 1), cnf(net=mlp(hidden=[16], activation=\"tanh\"), "
            "trace=\"{}\", steps=12))")
    exact, hutchinson = compile_text(text.format("exact")), compile_text(text.format("hutchinson"))
    assert (exact.log_prob_kind, hutchinson.log_prob_kind) == ("exact", "estimate")
    params = exact.init(jax.random.key(0))["x"]
    leaves, tree = jax.tree_util.tree_flatten(params)
    keys = jax.random.split(jax.random.key(1), len(leaves))
    params = jax.tree_util.tree_unflatten(tree, [p + jax.random.normal(k, p.shape) for p, k in zip(leaves, keys)])
    n, probes = 5, 400
    y = jax.random.normal(jax.random.key(2), (n, 3))
    # fixed steps: both solves take the same path, so E[estimate] is the exact discretised log-det
    _, log_det = jax.jit(mechanism(exact).log_det_inverse)(params, y, None, jax.random.key(3))
    _, estimates = jax.jit(mechanism(hutchinson).log_det_inverse)(params, jnp.repeat(y, probes, axis=0), None,
                                                                   jax.random.key(4))
    estimates = np.asarray(estimates).reshape(n, probes)
    mean, se = estimates.mean(1), estimates.std(1, ddof=1) / np.sqrt(probes)
    assert np.all(se > 1e-4)  # a real estimate, with noise
    assert np.all(np.abs(mean - np.asarray(log_det)) < 4 * se), (mean, np.asarray(log_det), se)
    # log_prob uses fixed probes: repeatable
    lp = hutchinson.log_prob({"x": params}, {"x": y})
    np.testing.assert_array_equal(lp, hutchinson.log_prob({"x": params}, {"x": y}))


@pytest.mark.parametrize("train", ["likelihood", "flow_matching"])
def test_cnf_training_raises_heldout_likelihood(train, moons):
    prog = compile_text(f"data x: real[2]\nx ~ pushforward(normal(0, 1), cnf(net=mlp(hidden=[16, 16]), "
                        f"train=\"{train}\", steps=4))")
    heldout = {"x": builtin("moons", 500, seed=1).arrays["x"]}
    start = -float(prog.log_prob(prog.init(jax.random.key(0)), heldout).mean())
    fit = prog.fit({"x": moons}, steps=150, key=jax.random.key(0), batch_size=64, progress=False)
    nll = -float(prog.log_prob(fit.params, heldout).mean())
    assert nll < start - 0.3, (start, nll)
    row = prog.describe().splitlines()[3].split()
    assert row[5:7] == (["nll", "(ode)"] if train == "likelihood" else ["flow", "matching"])
    assert row[-1] == str(6 * 4)


# -- generators --------------------------------------------------------------------------------------


def test_generator_lowers_energy_distance_and_has_no_likelihood(moons):
    prog = compile_text("data x: real[2]\nx ~ pushforward(normal(0, 1), generator(net=mlp(hidden=[64, 64]), "
                        "critic=mlp(hidden=[64, 64])))")
    heldout = builtin("moons", 1000, seed=1).arrays["x"]
    start = energy_distance(prog.sample(prog.init(jax.random.key(0)), jax.random.key(1), 1000)["x"], heldout)
    fit = prog.fit({"x": moons}, steps=600, key=jax.random.key(0), batch_size=256, progress=False)
    end = energy_distance(prog.sample(fit.params, jax.random.key(1), 1000)["x"], heldout)
    assert end < 0.3 * start, (start, end)
    assert prog.log_prob_kind == "unavailable"
    with pytest.raises(GenRuntimeError, match="'x'"):
        prog.log_prob(fit.params, {"x": heldout})
    row = prog.describe().splitlines()[3]
    assert "adversarial (wgan-gp)" in row and "one-shot" in row and row.split()[-1] == "1"
