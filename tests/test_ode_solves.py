"""``ode(f, y0, t0, ts, ...)`` in expressions: diffrax's solve against closed forms and scipy,
the stiff solver, a failed solve's NaN and advice, and NUTS on an ODE parameter."""

from __future__ import annotations

import time

import jax
import numpy as np
import pytest
from scipy.integrate import solve_ivp

import gendsl
from gendsl.errors import GenRuntimeError


def _solve(text: str, data: dict) -> np.ndarray:
    """The deterministic ``sol`` of a model whose inputs are all in ``data`` (double precision)."""
    with jax.enable_x64(True):
        program = gendsl.compile(gendsl.parse(text))
        return np.asarray(program.sample({}, jax.random.key(0), 1, data=data)["sol"][0])


DECAY = """
model decay {
  data T: int
  data ts: real[T]
  data k: real
  data y0: real[2]
  fn rate(t, y, k) = -k * y
  sol = ode(rate, y0, 0.0, ts, k)
  z ~ normal(0, 1)
}
"""


def test_exponential_decay_matches_its_closed_form():
    ts = np.array([0.1, 0.5, 1.0, 2.0, 4.0, 7.5])
    y0, k = np.array([2.0, -0.5]), 0.7
    sol = _solve(DECAY, {"T": 6, "ts": ts, "k": k, "y0": y0})
    assert sol.shape == (6, 2)
    np.testing.assert_allclose(sol, y0 * np.exp(-k * ts)[:, None], atol=1e-5)


LOTKA_VOLTERRA = """
model lotka_volterra {
  data T: int
  data ts: real[T]
  data theta: real[4]
  fn lv(t, z, a, b, c, d) = [a * z[0] - b * z[0] * z[1], d * z[0] * z[1] - c * z[1]]
  sol = ode(lv, [10.0, 5.0], 0.0, ts, theta[0], theta[1], theta[2], theta[3], rtol=1e-8, atol=1e-8)
  u ~ normal(0, 1)
}
"""


def test_lotka_volterra_matches_scipy():
    ts = np.linspace(0.5, 15.0, 30)
    a, b, c, d = 0.55, 0.028, 0.84, 0.026
    sol = _solve(LOTKA_VOLTERRA, {"T": 30, "ts": ts, "theta": [a, b, c, d]})
    ref = solve_ivp(lambda t, z: [a * z[0] - b * z[0] * z[1], d * z[0] * z[1] - c * z[1]], (0.0, 15.0),
                    [10.0, 5.0], t_eval=ts, method="DOP853", rtol=1e-11, atol=1e-11).y.T
    np.testing.assert_allclose(sol, ref, rtol=1e-5)


STIFF = """
model stiff {
  data ts: real[4]
  fn f(t, y, a, b) = [a * y[0] + b * y[1], b * y[0] + a * y[1]]
  sol = ode(f, [2.0, 0.0], 0.0, ts, -500.5, 499.5, solver=SOLVER, max_steps=200)
  u ~ normal(0, 1)
}
"""


def test_the_stiff_solver_solves_a_stiff_linear_system_that_tsit5_cannot_in_the_step_limit():
    """Eigenvalues -1 (along [1, 1]) and -1000 (along [1, -1]): y0 + y1 decays as exp(-t), y0 - y1 as exp(-1000 t)."""
    ts = np.array([0.001, 0.1, 1.0, 10.0])
    slow, fast = 2.0 * np.exp(-ts), 2.0 * np.exp(-1000.0 * ts)
    sol = _solve(STIFF.replace("SOLVER", '"kvaerno5"'), {"ts": ts})
    np.testing.assert_allclose(sol, np.stack([(slow + fast) / 2, (slow - fast) / 2], axis=1), atol=1e-5)
    assert np.isnan(_solve(STIFF.replace("SOLVER", '"tsit5"'), {"ts": ts})).all()


DECAY_DATA = """
model decay_rate {
  data T: int
  data ts: real[T]
  data y: real[T]
  fn rate(t, u, k) = -k * u
  k ~ lognormal(0, 1)
  y ~ normal(ode(rate, 2.0, 0.0, ts, k, max_steps=MAX_STEPS), 0.05)
}
"""


def _decay_data(k: float = 0.8, seed: int = 1) -> dict:
    ts = np.linspace(0.25, 5.0, 20)
    noise = 0.05 * np.random.default_rng(seed).standard_normal(20)
    return {"T": 20, "ts": ts, "y": 2.0 * np.exp(-k * ts) + noise}


@pytest.mark.slow
def test_nuts_recovers_the_decay_rate():
    program = gendsl.compile(gendsl.parse(DECAY_DATA.replace("MAX_STEPS", "4096")))
    start = time.perf_counter()
    post = program.infer(_decay_data(), key=jax.random.key(3), num_chains=2, num_warmup=300, num_samples=300,
                         precision="single")  # half the time of double precision on two cores
    draws = np.asarray(post.samples["k"]).ravel()
    print(f"NUTS on the decay rate: {time.perf_counter() - start:.1f} s, k = {draws.mean():.4f} +- {draws.std():.4f}")
    assert abs(draws.mean() - 0.8) < 4 * draws.std()
    assert draws.std() < 0.05


def test_a_solve_that_hits_the_step_limit_says_what_to_change():
    program = gendsl.compile(gendsl.parse(DECAY_DATA.replace("MAX_STEPS", "2")))
    with pytest.raises(GenRuntimeError, match="increase max_steps or loosen rtol/atol, or try solver=\"kvaerno5\""):
        program.infer(_decay_data(), num_chains=1, num_warmup=10, num_samples=10)
