"""Program entry points on leaf models: joint log-density, ancestral sampling, fit, save/load."""

import gc
import time

import jax
import numpy as np
import optax
import pytest
import scipy.stats as st
from conftest import GOLDEN

import gendsl
from gendsl.compiler.lower import lower

EIGHT = {"J": 8, "y": np.array([28, 8, -3, 7, -1, 1, 18, 12.0]), "sigma": np.array([15, 10, 16, 11, 9, 11, 10, 18.0])}


@pytest.fixture(scope="module")
def schools():
    return gendsl.compile(gendsl.load(GOLDEN / "good" / "language_examples.gen", model="eight_schools"))


def test_joint_log_density_matches_closed_form(schools):
    draws = schools.sample({}, jax.random.key(1), 7, {"J": 8, "sigma": EIGHT["sigma"]})
    assert draws["theta"].shape == (7, 8) and draws["mu"].shape == (7,)
    np.testing.assert_allclose(draws["theta"], draws["mu"][:, None] + draws["tau"][:, None] * draws["theta_raw"], rtol=1e-5)
    lp = schools.log_prob({}, {**draws, "J": 8, "sigma": EIGHT["sigma"]})
    x = {k: np.asarray(v, dtype=float) for k, v in draws.items()}
    ref = (st.norm(0, 5).logpdf(x["mu"]) + st.halfcauchy(0, 5).logpdf(x["tau"])
           + st.norm(0, 1).logpdf(x["theta_raw"]).sum(1)
           + st.norm(x["theta"], EIGHT["sigma"]).logpdf(x["y"]).sum(1))
    np.testing.assert_allclose(lp, ref, rtol=1e-5)
    assert schools.log_prob_kind == "exact"


def test_ancestral_sampling_gets_the_marginal_right():
    prog = gendsl.compile(gendsl.parse("model m {\n  a ~ normal(1, 2)\n  b ~ normal(3 * a, 1)\n}\n"))
    d = prog.sample({}, jax.random.key(0), 40000)
    b = np.asarray(d["b"])
    # b = 3a + e: mean 3, variance 9*4 + 1
    assert abs(b.mean() - 3) < 4 * np.sqrt(37 / 40000)
    assert abs(b.var() / 37 - 1) < 0.03


def test_log_prob_needs_the_latent_variables(schools):
    with pytest.raises(gendsl.GenDataError, match="'mu'.*latent"):
        schools.log_prob({}, EIGHT)


def test_fit_recovers_a_gaussian_and_accepts_any_optax_optimizer(tmp_path):
    text = "model m {\n  data x: real[2]\n  x ~ factorize(made(hidden=[16], components=2))\n}\n"
    prog = gendsl.compile(gendsl.parse(text))
    rng = np.random.default_rng(0)
    x = rng.normal([1.0, -2.0], [0.5, 2.0], size=(2000, 2)).astype(np.float32)
    fit = prog.fit({"x": x}, steps=300, key=jax.random.key(0), batch_size=256,
                   optimizer=optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(3e-3)), progress=False)
    assert fit.losses.shape == (300,)
    assert fit.losses[-20:].mean() < fit.losses[:20].mean()
    true_entropy = st.norm(1, 0.5).entropy() + st.norm(-2, 2).entropy()
    nll = -float(np.mean(prog.log_prob(fit.params, {"x": x})))
    assert nll < true_entropy + 0.15
    path = prog.save(fit.params, tmp_path / "params")
    again = prog.load_params(path)
    np.testing.assert_array_equal(prog.log_prob(again, {"x": x[:5]}), prog.log_prob(fit.params, {"x": x[:5]}))


def test_fit_is_deterministic_given_the_key():
    prog = gendsl.compile(gendsl.parse("model m {\n  data x: real\n  x ~ factorize(made(hidden=[8], components=2))\n}\n"))
    x = np.random.default_rng(1).normal(size=(300,)).astype(np.float32)
    a = prog.fit({"x": x}, steps=20, key=jax.random.key(3), batch_size=64, progress=False)
    b = prog.fit({"x": x}, steps=20, key=jax.random.key(3), batch_size=64, progress=False)
    np.testing.assert_array_equal(a.losses, b.losses)


@pytest.mark.parametrize("data, message", [
    ({"x": np.zeros((5, 3))}, r"'x' is declared real\[2\].*shape \[5, 3\]"),
    ({"x": np.full((5, 2), np.nan)}, "'x' holds a non-finite value"),
    ({}, "missing 'x'"),
    ({"x": np.zeros((5, 2)), "z": np.zeros(5)}, "'z'"),
])
def test_bad_data_gets_a_clear_error(data, message):
    prog = gendsl.compile(gendsl.parse("model m {\n  data x: real[2]\n  x ~ normal(0, 1)\n}\n"))
    with pytest.raises(gendsl.GenDataError, match=message):
        prog.log_prob({}, data)


def test_tokens_out_of_range_are_rejected():
    prog = gendsl.compile(gendsl.parse("model m {\n  data s: token[3] of 4\n  s ~ factorize(made(hidden=[8]))\n}\n"))
    with pytest.raises(gendsl.GenDataError, match="tokens in 0..3"):
        prog.fit({"s": np.array([[0, 1, 4]])}, steps=1, progress=False)


def test_parse_check_lower_of_200_statements_is_fast():
    lines = ["model big {", "  data N: int", "  data y: real[N]", "  a0 ~ normal(0, 1)"]
    for i in range(1, 197):
        if i % 3 == 0:
            lines.append(f"  a{i} = exp(a{i - 1}) / 2 + a{i - 2}")
        else:
            lines.append(f"  a{i} ~ normal(a{i - 1} * 0.5, 1 + sigmoid(a{i - 2 if i > 1 else 0}))")
    lines += ["  y ~ normal(a196, 1)", "}"]
    text = "\n".join(lines) + "\n"
    assert len(lines) - 2 >= 200
    gendsl.parse("model warm {\n  a ~ normal(0, 1)\n}\n")  # build the parser once
    seconds = []
    gc.collect()
    gc.disable()  # late in a long test session a collection of its heap alone can take seconds
    try:
        for _ in range(3):  # the best of three: the machine is shared
            t0 = time.perf_counter()
            model = gendsl.parse(text)
            lower(model, {"N": 3})
            seconds.append(time.perf_counter() - t0)
    finally:
        gc.enable()
    assert min(seconds) < 1.0, seconds


def test_data_that_is_not_a_dict_is_a_clear_error():
    prog = gendsl.compile(gendsl.parse("model m {\n  data x: real[2]\n  x ~ normal(0, 1)\n}"))
    with pytest.raises(gendsl.GenDataError, match=r"a dict from variable name to array \(e.g. \{'x': array\}\), got ndarray"):
        prog.fit(np.zeros((10, 2)), steps=1, progress=False)
    with pytest.raises(gendsl.GenDataError, match="got list"):
        prog.log_prob({}, [[0.0, 1.0]])
