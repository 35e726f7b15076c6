"""Flow matching on the straight-line interpolant (Lipman et al. 2023; Liu et al. 2023, rectified flow).

Between paired endpoints ``start`` (at ``t = 0``) and ``end`` (at ``t = 1``) the interpolant
``x_t = (1 - t) start + t end`` moves at the constant velocity ``end - start``; a velocity field
is regressed on it at times ``t``. Which endpoint is data and which noise, how ``t`` is drawn and
how the network parametrises the velocity belong to the caller (``evolve`` runs data to noise with
low-variance times and a preconditioned model; ``cnf`` runs noise to data with uniform times).
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

__all__ = ["interpolate", "flow_matching_loss"]


def interpolate(start: jax.Array, end: jax.Array, t: jax.Array) -> jax.Array:
    """``(1 - t) start + t end`` for batches ``(n, *shape)`` and times ``t`` ``(n,)``."""
    expand = (slice(None),) + (None,) * (start.ndim - 1)
    return (1.0 - t)[expand] * start + t[expand] * end


def flow_matching_loss(velocity: Callable, start: jax.Array, end: jax.Array, t: jax.Array) -> jax.Array:
    """``E_n || velocity(t, x_t) - (end - start) ||^2``, summed over elements, averaged over the batch.

    Parameters
    ----------
    velocity:
        Batched ``(t (n,), x_t (n, *shape)) -> (n, *shape)``.
    start, end:
        Paired endpoints ``(n, *shape)`` at ``t = 0`` and ``t = 1``.
    t:
        ``(n,)`` times in ``[0, 1]``.
    """
    v = velocity(t, interpolate(start, end, t))
    sq = (v - (end - start)) ** 2
    return jnp.mean(jnp.sum(sq.reshape(sq.shape[0], -1), axis=-1))
