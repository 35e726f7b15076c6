"""Masked autoregressive flows (Papamakarios et al. 2017): the ``maf`` map.

Each layer is ``z_d = x_d * scale_d(x_<d) + shift_d(x_<d)`` with the shifts and scales from a
MADE network (context entering every hidden unit): the density direction multiplies by the
scale and sampling divides (flowjax's orientation; see :class:`~.coupling.AffineTransformer` for
why a density pass that divides by a floored scale blows up away from the training data). The density direction ``x -> z`` needs one
network pass; sampling ``z -> x`` fills the elements one at a time (``dim`` passes per layer).
Layers alternate the element order (reversal or fixed permutations). The MADE's last layer
starts at zero, so the flow is the identity at initialisation.
"""

from __future__ import annotations

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
from gendsl.nn.made import MADE

__all__ = ["MaskedAffine", "build_maf"]

#: ``maf(...)`` in the language
MAF_SIGNATURE = Signature("maf", "map", (
        Param("layers", "int", 5, limit=LAYER_LIMIT), Param("hidden", "ints", (64, 64), limit=WIDTH_LIMIT),
        Param("activation", "str", "silu", ACTIVATION),
    ), "masked autoregressive flow")


class MaskedAffine(AbstractBijection):
    """One autoregressive affine layer."""

    made: MADE
    dim: int = eqx.field(static=True)
    cond_dim: int = eqx.field(static=True)

    def __init__(self, dim: int, cond_dim: int, hidden, activation: str = "silu", *, key: jax.Array):
        made = MADE(dim, 2, hidden, context=cond_dim, activation=activation, key=key)
        last = made.layers[-1]
        zeroed = eqx.tree_at(lambda l: (l.weight, l.bias), last,
                             (jnp.zeros_like(last.weight), jnp.zeros_like(last.bias)))
        self.made = eqx.tree_at(lambda m: m.layers[-1], made, zeroed)
        self.dim, self.cond_dim = dim, cond_dim

    def _shift_scale(self, x, context):
        theta = self.made(squash(x), context)
        return theta[:, 0], positive_scale(theta[:, 1])

    def inverse_and_log_det(self, x, context=None):
        shift, scale = self._shift_scale(x, context)
        return x * scale + shift, jnp.sum(jnp.log(scale))

    def transform_and_log_det(self, z, context=None):
        # after pass i, elements 0..i are final; the last pass sees every x_<d it needs
        def fill(_, carry):
            x, _ = carry
            shift, scale = self._shift_scale(x, context)
            return (z - shift) / scale, -jnp.sum(jnp.log(scale))

        return jax.lax.fori_loop(0, self.dim, fill, (jnp.zeros_like(z), jnp.zeros((), z.dtype)))

    def cost(self) -> int:
        """Sampling fills the elements one at a time: ``dim`` passes."""
        return self.dim


def build_maf(spec, dim: int, cond_dim: int, *, key: jax.Array) -> Scan:
    """The ``maf(layers=, hidden=, activation=)`` map: ``layers`` MADE affine layers with permutations."""
    layers = spec["layers"]

    def make(k):
        return MaskedAffine(dim, cond_dim, spec["hidden"], spec["activation"], key=k)

    return Scan(eqx.filter_vmap(make)(jax.random.split(key, layers)), layer_permutations(dim, layers))


#: the ``maf`` entry of the bijection table
BIJECTION = Bijection(MAF_SIGNATURE, build_maf)
