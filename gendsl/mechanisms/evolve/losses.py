"""Training objectives of an evolve node, derived from its process.

- Denoising score matching (vp, subvp, ve, edm): ``E_t lambda(t) E ||s(x_t, t) - grad log p(x_t | x_0)||^2``.
  The *standard* weighting ``lambda = sigma^2`` (Song et al. 2021) is the noise-prediction error
  ``||eps_hat - eps||^2`` with ``t`` uniform (``edm``: log-normal noise levels, and the
  denoiser's error weighed by ``(sigma^2 + 1) / sigma^2``, Karras et al. 2022); the *likelihood*
  weighting ``lambda = g^2`` bounds the negative log-likelihood. Since ``g^2 / sigma^2 = d
  log(sigma/alpha)^2 / dt`` for every Gaussian process, its importance-sampled form draws
  ``log(sigma / alpha)`` uniformly and weighs the noise error by a constant.
- Velocity regression (flow matching): ``E_t ||v(x_t, t) - (eps - x_0)||^2`` on the straight line
  (:mod:`gendsl.numerics.flow_matching`), optionally with noise paired to data by minibatch
  optimal transport.

Times are drawn with low variance: stratified (one uniform draw per stratum of width ``1/n``,
shuffled) or antithetic (pairs ``u, 1 - u``). Losses are per example (summed over elements),
averaged over the batch. ``model`` is a per-example ``(t, x, c) -> (x0_hat, eps_hat)``.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from gendsl.mechanisms.evolve.processes import AbstractProcess, FlowMatching, velocity
from gendsl.numerics.flow_matching import flow_matching_loss

__all__ = ["TIME_SAMPLING", "uniform_times", "denoising_loss", "velocity_loss", "ot_pairing"]

TIME_SAMPLING = ("stratified", "antithetic", "uniform")
#: entropic regularisation of the minibatch OT plan, relative to the mean pairwise cost
_OT_EPSILON = 0.01
_OT_ITERATIONS = 100


def uniform_times(key: jax.Array, n: int, method: str = "stratified") -> jax.Array:
    """``n`` draws of U(0, 1) with low variance of their mean: shape ``(n,)``.

    ``stratified``: one draw in each ``[i/n, (i+1)/n)``, shuffled; ``antithetic``: ``u`` and
    ``1 - u`` in pairs; ``uniform``: independent.
    """
    k1, k2 = jax.random.split(key)
    if method == "stratified":
        u = (jnp.arange(n) + jax.random.uniform(k1, (n,))) / n
        return jax.random.permutation(k2, u)
    if method == "antithetic":
        half = jax.random.uniform(k1, ((n + 1) // 2,))
        return jnp.concatenate([half, 1.0 - half])[:n]
    if method == "uniform":
        return jax.random.uniform(k1, (n,))
    raise ValueError(f"unknown time sampling {method!r}; expected one of {TIME_SAMPLING}")


def _noised(process: AbstractProcess, x0, t, eps):
    alpha, sigma = jax.vmap(process.alpha_sigma)(t)
    expand = (slice(None),) + (None,) * (x0.ndim - 1)
    return alpha[expand] * x0 + sigma[expand] * eps


def _per_example(sq: jax.Array) -> jax.Array:
    return jnp.sum(sq.reshape(sq.shape[0], -1), axis=-1)


def denoising_loss(model: Callable, process: AbstractProcess, x0: jax.Array, context, key: jax.Array, *,
                   weighting: str = "standard", time_sampling: str = "stratified") -> jax.Array:
    """Denoising score matching on a batch ``x0`` of shape ``(n, *shape)`` (scalar).

    Parameters
    ----------
    model:
        Per-example ``(t, x, c) -> (x0_hat, eps_hat)``.
    context:
        ``(n, C)`` conditioning rows handed to ``model``, or None.
    weighting:
        ``"standard"``: ``E_t w(t) ||eps_hat - eps||^2 / 2`` with the process's training times and
        weights (:meth:`~gendsl.mechanisms.evolve.processes.AbstractProcess.training_times`: ``t ~
        U[t_min, 1]`` and ``w = 1``; ``edm``: log-normal noise levels and EDM's weighting);
        ``"likelihood"``: ``(1/2) int g^2 E||s - grad log p(x_t|x_0)||^2 dt``, estimated by
        drawing ``log(sigma/alpha)`` uniformly.
    """
    n = x0.shape[0]
    k_t, k_eps = jax.random.split(key)
    u = uniform_times(k_t, n, time_sampling)
    lo = process.t_min_likelihood
    if weighting == "standard":
        t = process.training_times(u)
        scale = 0.5 * process.training_weight(t)
    elif weighting == "likelihood":
        lam_lo, lam_hi = process.log_snr(jnp.float32(max(lo, 1e-7))), process.log_snr(jnp.float32(1.0))
        t = process.t_of_log_snr(lam_lo + (lam_hi - lam_lo) * u, max(lo, 1e-7), 1.0)
        scale = lam_hi - lam_lo  # (1/2) * int g^2 / sigma^2 dt = (1/2) * 2 * (lam_hi - lam_lo)
    else:
        raise ValueError(f"unknown weighting {weighting!r}")
    eps = jax.random.normal(k_eps, x0.shape)
    xt = _noised(process, x0, t, eps)
    _, eps_hat = jax.vmap(model, (0, 0, 0))(t, xt, context)
    return jnp.mean(scale * _per_example((eps_hat - eps) ** 2))


def velocity_loss(model: Callable, process: AbstractProcess, x0: jax.Array, context, key: jax.Array, *,
                  time_sampling: str = "stratified", ot: bool = False) -> jax.Array:
    """Flow-matching velocity regression ``E ||v_hat(x_t, t) - (eps - x0)||^2`` (scalar).

    ``process`` is the straight-line interpolant (:class:`FlowMatching`: ``x_t = (1 - t) x0 + t
    eps``); the regression itself is :func:`gendsl.numerics.flow_matching.flow_matching_loss`,
    with times from :func:`uniform_times` and the velocity of the model's ``(x0_hat, eps_hat)``.
    With ``ot``, each data point is paired with a noise draw sampled from an entropic optimal
    transport plan between the batch and an equal batch of noise (:func:`ot_pairing`).
    """
    if not isinstance(process, FlowMatching):
        raise ValueError(f"velocity regression runs on the straight-line interpolant (flow_matching), "
                         f"got {process.name}")
    n = x0.shape[0]
    k_t, k_eps, k_ot = jax.random.split(key, 3)
    t = process.t_min + (1.0 - process.t_min) * uniform_times(k_t, n, time_sampling)
    eps = jax.random.normal(k_eps, x0.shape)
    if ot:
        eps = ot_pairing(k_ot, x0, eps)

    def v_hat(t, xt):
        x0_hat, eps_hat = jax.vmap(model, (0, 0, 0))(t, xt, context)
        return jax.vmap(lambda ti, a, b: velocity(process, ti, a, b))(t, x0_hat, eps_hat)

    return flow_matching_loss(v_hat, x0, eps, t)


def ot_pairing(key: jax.Array, x0: jax.Array, eps: jax.Array) -> jax.Array:
    """Re-pair noise with data by minibatch optimal transport: returns ``eps`` rows, reordered.

    Solves the entropic OT problem between the two uniform empirical measures with squared
    Euclidean cost (log-domain Sinkhorn), then draws for each data point one noise row from its
    row of the plan. Shapes ``(n, *shape)``.
    """
    n = x0.shape[0]
    a, b = x0.reshape(n, -1), eps.reshape(n, -1)
    cost = jnp.sum((a[:, None, :] - b[None, :, :]) ** 2, axis=-1)
    reg = _OT_EPSILON * jax.lax.stop_gradient(jnp.mean(cost)) + 1e-12
    log_k = -cost / reg
    log_w = -jnp.log(n) * jnp.ones(n)

    def sweep(_, fg):
        f, g = fg
        f = log_w - jax.nn.logsumexp(log_k + g[None, :], axis=1)
        g = log_w - jax.nn.logsumexp(log_k + f[:, None], axis=0)
        return f, g

    f, g = jax.lax.fori_loop(0, _OT_ITERATIONS, sweep, (jnp.zeros(n), jnp.zeros(n)))
    logits = f[:, None] + log_k + g[None, :]
    pick = jax.random.categorical(key, logits, axis=1)
    return jax.lax.stop_gradient(eps[pick])
