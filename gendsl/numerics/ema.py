"""Exponential moving average of parameters (PyTrees), pure.

``ema_update`` blends the current parameters into the average with weight ``1 - d``; with a
``step`` (updates so far) the decay warms up as ``d = min(decay, (1 + step) / (10 + step))``, so
the early average forgets its (untrained) start quickly; with ``step=None`` it is ``decay``
throughout. No gradient flows into the average.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["ema_init", "ema_decay", "ema_update"]


def ema_init(params):
    """The average before any update: the parameters themselves."""
    return jax.tree_util.tree_map(lambda p: p, params)


def ema_decay(decay: float, step: jax.Array | None) -> jax.Array | float:
    """The decay of the update after ``step`` updates (``step`` None: ``decay`` itself)."""
    if step is None:
        return decay
    return jnp.minimum(decay, (1.0 + step) / (10.0 + step))


def ema_update(ema, params, step: jax.Array | None, decay: float):
    """``d * ema + (1 - d) * params`` leafwise with ``d = ema_decay(decay, step)``; ``params``
    held out of the gradient."""
    d = ema_decay(decay, step)
    return jax.tree_util.tree_map(lambda e, p: d * e + (1 - d) * jax.lax.stop_gradient(p), ema, params)
