"""The learned model of an evolve node: a network, preconditioned, predicting ``(x0_hat, eps_hat)``.

The network ``F`` sees the noisy point scaled to unit variance, an embedding of the noise level
and the conditioning vector. Its output is mixed with the input so that the prediction is
well-posed at every noise level (the "v" parameterisation of Salimans & Ho, 2022, written for
any ``alpha, sigma``; with ``s = sqrt(alpha^2 + sigma^2)``)::

    x0_hat  = alpha x / s^2 + (sigma / s) F
    eps_hat = sigma x / s^2 - (alpha / s) F

so ``alpha x0_hat + sigma eps_hat = x`` holds exactly, neither needs a division by ``alpha`` or
``sigma``, and for data of unit variance the regression target of ``F`` has unit variance at
every ``t``. For flow matching the same formula is a preconditioned velocity prediction
(``v = eps_hat - x0_hat``, exact at both ends when ``F = 0``).

Classifier-free guidance: the conditioning vector carries a last "present" flag; training
drops the context (zeros, flag 0) at random; :class:`Guided` extrapolates the conditional
prediction away from the unconditional one.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp

from gendsl.mechanisms.evolve.processes import AbstractProcess

__all__ = ["TIME_FEATURES", "time_features", "Denoiser", "Guided", "with_context"]

#: angular frequencies of the sinusoidal embedding of ``log(sigma / alpha) / 4``
_FREQUENCIES = tuple(2.0 ** (k - 2) for k in range(8))
#: width of :func:`time_features`
TIME_FEATURES = 1 + 2 * len(_FREQUENCIES)
#: the embedded noise level is clipped to this many nats of ``log(sigma / alpha)``
_LOG_SNR_CLIP = 12.0


def time_features(process: AbstractProcess, t: jax.Array) -> jax.Array:
    """Embedding of the noise level at scalar ``t``: shape ``(TIME_FEATURES,)``.

    The coordinate is ``u = log(sigma / alpha) / 4`` (clipped), resolving both ends of the
    process; the features are ``u`` and ``sin, cos`` of ``u`` at geometric frequencies.
    """
    u = jnp.clip(process.log_snr(t), -_LOG_SNR_CLIP, _LOG_SNR_CLIP) / 4.0
    w = jnp.asarray(_FREQUENCIES) * u
    return jnp.concatenate([u[None], jnp.sin(w), jnp.cos(w)])


class Denoiser(eqx.Module):
    """``(t, x, c) -> (x0_hat, eps_hat)`` for one example.

    Attributes
    ----------
    net:
        A per-example vector network from ``size + TIME_FEATURES + context`` inputs to ``size``.
    process:
        The process whose ``alpha(t), sigma(t)`` precondition the network.
    shape:
        The event shape of ``x`` (the network sees it flattened).
    """

    net: eqx.Module
    process: AbstractProcess
    shape: tuple[int, ...] = eqx.field(static=True)

    def __call__(self, t, x, c=None):
        alpha, sigma = self.process.alpha_sigma(t)
        s2 = alpha**2 + sigma**2
        s = jnp.sqrt(s2)
        flat = x.reshape(-1)
        parts = [flat / s, time_features(self.process, t)]
        if c is not None:
            parts.append(c)
        f = self.net(jnp.concatenate(parts))
        x0_hat = alpha * flat / s2 + (sigma / s) * f
        eps_hat = sigma * flat / s2 - (alpha / s) * f
        return x0_hat.reshape(self.shape), eps_hat.reshape(self.shape)


class Guided(eqx.Module):
    """Classifier-free guidance: ``(1 + w) * model(c) - w * model(no context)``.

    ``c`` must end with the "present" flag of :func:`with_context`. ``(x0_hat, eps_hat)`` stay
    consistent with ``x`` because the weights sum to one.
    """

    model: eqx.Module
    scale: float

    def __call__(self, t, x, c):
        cond = self.model(t, x, c)
        uncond = self.model(t, x, jnp.zeros_like(c))
        w = self.scale
        return tuple((1 + w) * a - w * b for a, b in zip(cond, uncond))


def with_context(context: jax.Array | None, keep: jax.Array | None = None) -> jax.Array | None:
    """The network's conditioning input: ``context`` (``(n, C)``) times ``keep`` with the flag ``keep``.

    ``keep`` (``(n,)`` of 0/1, default ones) marks examples whose context is kept.
    """
    if context is None:
        return None
    keep = jnp.ones(context.shape[:1], context.dtype) if keep is None else keep.astype(context.dtype)
    return jnp.concatenate([context * keep[:, None], keep[:, None]], axis=-1)
