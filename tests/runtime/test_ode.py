"""The shared numerics of issue 12: the ODE log-density (exact trace and Hutchinson's) against a
closed form, the straight-line flow-matching loss, and the parameter EMA against a hand computation."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import jax.scipy as jsp
import numpy as np
from jax.scipy.stats import multivariate_normal as mvn

from gendsl.numerics.ema import ema_init, ema_update
from gendsl.numerics.flow_matching import flow_matching_loss
from gendsl.numerics.ode import divergence, integrate_divergence, log_prob_through_ode, rademacher_probes

A = jnp.array([[0.3, -0.8, 0.1], [0.5, -0.2, 0.4], [-0.3, 0.2, 0.6]])


class Linear:
    """``v(t, x, c) = A x``: ``x_1 = e^A x_0``, so ``x_0 = e^{-A} z`` with ``z ~ N(0, I)`` has
    ``log p_0(x) = log N(e^A x; 0, I) + tr A``."""

    def __call__(self, t, x, c):
        return A @ x


def standard_normal(y):
    return jnp.sum(jax.scipy.stats.norm.logpdf(y), axis=-1)


def closed_form_data(key, n):
    inv = jsp.linalg.expm(-A)
    cov = inv @ inv.T
    return jax.random.multivariate_normal(key, jnp.zeros(3), cov, (n,)), cov


def test_divergence_exact_and_hutchinson():
    f = lambda x: jnp.tanh(A @ x) * x[::-1]  # noqa: E731
    x = jnp.array([0.2, -1.0, 0.7])
    val, div = divergence(f, x)
    np.testing.assert_allclose(val, f(x), rtol=1e-6)
    np.testing.assert_allclose(div, jnp.trace(jax.jacobian(f)(x)), rtol=1e-5)
    probes = rademacher_probes(jax.random.key(0), 4000, 3)
    estimates = jax.vmap(lambda z: divergence(f, x, z)[1])(probes)
    assert set(np.unique(np.asarray(probes))) == {-1.0, 1.0}
    se = float(estimates.std()) / math.sqrt(len(estimates))
    assert abs(float(estimates.mean()) - float(div)) < 4 * se


def test_exact_trace_log_density_matches_the_closed_form():
    x, cov = closed_form_data(jax.random.key(1), 32)
    lp = jax.jit(lambda x: log_prob_through_ode(Linear(), x, 0.0, 1.0, standard_normal, rtol=1e-7, atol=1e-7))(x)
    np.testing.assert_allclose(lp, mvn.logpdf(x, jnp.zeros(3), cov), atol=1e-4)


def test_hutchinson_mean_matches_the_closed_form_within_monte_carlo_error():
    x, cov = closed_form_data(jax.random.key(2), 3)
    probes = 400
    rows = jnp.repeat(x, probes, axis=0)
    z = rademacher_probes(jax.random.key(3), rows.shape[0], 3)
    lp = log_prob_through_ode(Linear(), rows, 0.0, 1.0, standard_normal, probes=z, rtol=1e-6, atol=1e-6)
    lp = np.asarray(lp).reshape(3, probes)
    mean, se = lp.mean(1), lp.std(1, ddof=1) / math.sqrt(probes)
    assert np.all(se > 1e-3)  # a real estimate: the probe's z^T A z varies
    np.testing.assert_array_less(np.abs(mean - np.asarray(mvn.logpdf(x, jnp.zeros(3), cov))), 4 * se)


def test_backward_solve_and_fixed_steps():
    """From t = 1 to 0 (the cnf orientation) the integral is ``-tr A``; fixed steps count."""
    y = jax.random.normal(jax.random.key(4), (5, 3))
    ctx = jnp.ones((5, 2))  # a context row per example reaches the field
    field = jax.tree_util.Partial(lambda t, x, c: A @ x + 0.0 * jnp.sum(c))
    end, integral, steps = integrate_divergence(field, y, 1.0, 0.0, ctx, steps=20)
    np.testing.assert_allclose(end, y @ jsp.linalg.expm(-A).T, atol=1e-5)
    np.testing.assert_allclose(integral, -jnp.trace(A) * jnp.ones(5), atol=1e-5)
    assert int(steps) == 20


def test_flow_matching_loss_is_zero_at_the_straight_line_velocity():
    start, end = jax.random.normal(jax.random.key(5), (2, 16, 2, 3))
    t = jax.random.uniform(jax.random.key(6), (16,))
    exact = lambda t, x: jnp.broadcast_to(end - start, x.shape)  # noqa: E731
    assert float(flow_matching_loss(exact, start, end, t)) == 0.0
    zero = lambda t, x: jnp.zeros_like(x)  # noqa: E731
    np.testing.assert_allclose(flow_matching_loss(zero, start, end, t),
                               np.mean(np.sum(np.asarray(end - start).reshape(16, -1) ** 2, -1)), rtol=1e-6)


def test_ema_matches_a_hand_computation():
    params = [{"w": jnp.array([1.0, 2.0]), "b": jnp.array(-1.0)},
              {"w": jnp.array([3.0, 0.0]), "b": jnp.array(1.0)},
              {"w": jnp.array([-1.0, 4.0]), "b": jnp.array(2.0)},
              {"w": jnp.array([0.5, 0.5]), "b": jnp.array(0.0)}]
    ema = ema_init(params[0])
    hand = {k: np.asarray(v, np.float64) for k, v in params[0].items()}
    for step, p in enumerate(params[1:]):
        d = min(0.999, (1 + step) / (10 + step))  # the warm-up: 1/10, 2/11, 3/12
        ema = ema_update(ema, p, jnp.int32(step), 0.999)
        hand = {k: d * hand[k] + (1 - d) * np.asarray(p[k]) for k in hand}
    for k in hand:
        np.testing.assert_allclose(ema[k], hand[k], rtol=1e-6)
    # without a step the decay is constant
    const = ema_update(params[0], params[1], None, 0.9)
    np.testing.assert_allclose(const["w"], 0.9 * np.array([1.0, 2.0]) + 0.1 * np.array([3.0, 0.0]), rtol=1e-6)
    # late in training the decay is the configured one
    late = ema_update(params[0], params[1], jnp.int32(10**6), 0.9)
    np.testing.assert_allclose(late["w"], const["w"], rtol=1e-6)
    # no gradient reaches the parameters through the average
    grad = jax.grad(lambda p: jnp.sum(ema_update(params[0], p, None, 0.5)["w"]))(params[1])
    assert float(jnp.sum(jnp.abs(grad["w"]))) == 0.0
