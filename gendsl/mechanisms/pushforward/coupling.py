"""Coupling layers (RealNVP, Dinh et al. 2017) and the ``coupling`` map: affine coupling flows.

A coupling layer keeps the first ``dim // 2`` elements and transforms the others elementwise by
a monotone map whose parameters a conditioner network computes from the kept elements and the
context. The triangular Jacobian makes ``log|det|`` the sum of the elementwise log-derivatives,
and both directions cost one network evaluation. A permutation after each layer lets every
element be transformed (reversal for ``dim = 2``: alternating halves).

``dim = 1``: nothing is kept, so the conditioner sees only the context (a learned constant
without one): the layer is then an elementwise map whose parameters depend on the context.

The conditioner's last layer starts at zero, so every layer (and the flow) is the identity at
initialisation.
"""

from __future__ import annotations

from typing import Protocol

import equinox as eqx
import jax
import jax.numpy as jnp

from gendsl.core.signatures import ACTIVATION, LAYER_LIMIT, WIDTH_LIMIT, Param, Signature
from gendsl.mechanisms.pushforward.bijection import (
    AbstractBijection,
    Bijection,
    Scan,
    layer_permutations,
    positive_scale,
    squash,
)
from gendsl.nn.mlp import MLP

__all__ = ["ElementwiseTransformer", "AffineTransformer", "Coupling", "coupling_flow", "build_coupling"]

#: ``coupling(...)`` in the language
COUPLING_SIGNATURE = Signature("coupling", "map", (
        Param("layers", "int", 8, limit=LAYER_LIMIT), Param("hidden", "ints", (64, 64), limit=WIDTH_LIMIT),
        Param("activation", "str", "silu", ACTIVATION),
    ), "affine coupling flow (RealNVP)")


class ElementwiseTransformer(Protocol):
    """A monotone scalar map family, applied to ``k`` elements with parameters ``(k, n_params)``."""

    n_params: int

    def forward(self, u: jax.Array, theta: jax.Array) -> tuple[jax.Array, jax.Array]:
        """``(k,)``, ``(k, n_params)`` -> values ``(k,)`` and log-derivatives ``(k,)``."""

    def inverse(self, v: jax.Array, theta: jax.Array) -> tuple[jax.Array, jax.Array]:
        """The inverse map, with the log-derivatives of the inverse ``(k,)``."""


class AffineTransformer(eqx.Module):
    """An affine map oriented like RealNVP's ``f: data -> latent`` (and flowjax's default).

    The density direction (``inverse``, data ``v`` -> latent ``u``) multiplies,
    ``u = v * scale + shift``, and sampling (``forward``) divides, ``v = (u - shift) / scale``,
    with ``scale = positive_scale(raw)`` and parameters ``(shift, raw)``.

    The orientation matters away from the training data. A density pass that divided by the scale
    (``u = (v - shift) / scale``) would amplify by up to ``1 / 0.01 = 100`` per layer wherever a
    conditioner outputs a small scale; the next layers' conditioners then see inputs far outside
    anything they were trained on, extrapolate linearly, and the blow-up compounds
    (``|z| ~ 1e7`` after 6 layers at a held-out point inside the training box, log-densities of
    ``-1e14``). Multiplying by the softplus scale grows at most linearly in the conditioner's output.
    """

    n_params: int = eqx.field(static=True, default=2)

    def forward(self, u, theta):
        scale = positive_scale(theta[:, 1])
        return (u - theta[:, 0]) / scale, -jnp.log(scale)

    def inverse(self, v, theta):
        scale = positive_scale(theta[:, 1])
        return v * scale + theta[:, 0], jnp.log(scale)


class Coupling(AbstractBijection):
    """One coupling layer: elements ``[:keep]`` pass through and condition the rest."""

    conditioner: MLP
    transformer: ElementwiseTransformer
    keep: int = eqx.field(static=True)
    dim: int = eqx.field(static=True)
    cond_dim: int = eqx.field(static=True)

    def __init__(self, dim: int, cond_dim: int, transformer, hidden, activation: str = "silu", *, key: jax.Array):
        self.dim, self.cond_dim, self.keep = dim, cond_dim, dim // 2
        self.transformer = transformer
        in_size = max(self.keep + cond_dim, 1)
        out_size = (dim - self.keep) * transformer.n_params
        self.conditioner = MLP(in_size, out_size, hidden, activation, key=key, zero_last=True)

    def _theta(self, kept: jax.Array, context: jax.Array | None) -> jax.Array:
        parts = [squash(kept)] if context is None else [squash(kept), context]
        h = jnp.concatenate(parts)
        if h.shape[0] == 0:  # dim 1 without context: a learned constant
            h = jnp.ones((1,), kept.dtype)
        return self.conditioner(h).reshape(self.dim - self.keep, self.transformer.n_params)

    def transform_and_log_det(self, z, context=None):
        kept, moved = z[: self.keep], z[self.keep:]
        out, log_d = self.transformer.forward(moved, self._theta(kept, context))
        return jnp.concatenate([kept, out]), jnp.sum(log_d)

    def inverse_and_log_det(self, x, context=None):
        kept, moved = x[: self.keep], x[self.keep:]
        out, log_d = self.transformer.inverse(moved, self._theta(kept, context))
        return jnp.concatenate([kept, out]), jnp.sum(log_d)


def coupling_flow(dim: int, cond_dim: int, layers: int, transformer, hidden, activation: str, *,
                  key: jax.Array) -> Scan:
    """``layers`` coupling layers, each followed by a fixed permutation, as one :class:`Scan`.

    Parameters
    ----------
    dim, cond_dim:
        Size of an example and of the context vector.
    layers:
        Number of coupling layers.
    transformer:
        The elementwise map family (:class:`AffineTransformer`, a spline...).
    hidden, activation:
        Conditioner widths and activation.
    key:
        PRNG key of the conditioners.
    """
    def make(k):
        return Coupling(dim, cond_dim, transformer, hidden, activation, key=k)

    return Scan(eqx.filter_vmap(make)(jax.random.split(key, layers)), layer_permutations(dim, layers))


def build_coupling(spec, dim: int, cond_dim: int, *, key: jax.Array) -> Scan:
    """The ``coupling(layers=, hidden=, activation=)`` map: an affine coupling flow."""
    return coupling_flow(dim, cond_dim, spec["layers"], AffineTransformer(), spec["hidden"], spec["activation"],
                         key=key)


#: the ``coupling`` entry of the bijection table
BIJECTION = Bijection(COUPLING_SIGNATURE, build_coupling)
