"""A running standardisation of training data: each element's mean and scale over every row seen.

Mechanisms that learn in standardised coordinates (evolve's networks, bijective flows) carry the
running moments in their training state, refresh them from each batch with
:func:`update_moments`, and hand back the :func:`affine` of the final moments with their
parameters, so sampling and density use the data's own location and scale:

    moments = init_moments(shape)
    moments = update_moments(moments, batch)          # each training step
    affine = affine_of(moments)                       # {"shift", "scale"}, each ``shape``
    y = standardise(affine, x); x = unstandardise(affine, y)
    log p(x) = log p_y(y) + log_jacobian(affine)

The moments are the exact means of every row seen so far (count-weighted), so after one epoch
they are the data's and no learning rate is involved.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["RIDGE", "FLOOR", "init_moments", "update_moments", "affine_of", "identity_affine", "standardise",
           "unstandardise", "log_jacobian"]

#: variance added to each element's, relative to its own mean square, and an absolute floor: a
#: constant element gets a small finite scale, and elements in very different units stay apart
RIDGE, FLOOR = 1e-6, 1e-12


def init_moments(shape: tuple[int, ...]) -> dict:
    """No rows seen: ``{"count": (), "mean": shape, "second": shape}`` zeros."""
    return {"count": jnp.zeros(()), "mean": jnp.zeros(shape), "second": jnp.zeros(shape)}


def update_moments(moments: dict, x: jax.Array) -> dict:
    """The moments after also seeing the rows of ``x`` ``(n, *shape)`` (no gradient flows)."""
    x = jax.lax.stop_gradient(x)
    count = moments["count"] + x.shape[0]
    w = x.shape[0] / count
    mean = moments["mean"] + w * (jnp.mean(x, axis=0) - moments["mean"])
    second = moments["second"] + w * (jnp.mean(x**2, axis=0) - moments["second"])
    return {"count": count, "mean": mean, "second": second}


def affine_of(moments: dict) -> dict:
    """The standardisation ``{"shift": mean, "scale": sd}`` of these moments, each ``shape``."""
    mean = moments["mean"]
    var = jnp.maximum(moments["second"] - mean**2, 0.0)
    return {"shift": mean, "scale": jnp.sqrt(var + RIDGE * moments["second"] + FLOOR)}


def identity_affine(shape: tuple[int, ...]) -> dict:
    """The standardisation that changes nothing: shift 0 and scale 1, each ``shape``."""
    return {"shift": jnp.zeros(shape), "scale": jnp.ones(shape)}


def standardise(affine: dict, x: jax.Array) -> jax.Array:
    """``(n, *shape)`` data -> ``(x - shift) / scale``."""
    return (x - affine["shift"]) / affine["scale"]


def unstandardise(affine: dict, y: jax.Array) -> jax.Array:
    """Inverse of :func:`standardise`."""
    return affine["shift"] + affine["scale"] * y


def log_jacobian(affine: dict) -> jax.Array:
    """``log |det dy/dx|`` of :func:`standardise` for one row (a scalar)."""
    return -jnp.sum(jnp.log(affine["scale"]))
