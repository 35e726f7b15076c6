"""What every evolve-derived node shares: its options, parameters, standardisation and model.

A node's parameters are ``{"net": network arrays, "shift": (*shape), "scale": (*shape)}``: the
process runs on the standardised variable ``y = (x - shift) / scale`` (the data's mean and
standard deviation per element, estimated during training), so the process's unit-variance
prior and the network's preconditioning fit any data scale. Densities pick up the Jacobian
``-sum(log scale)`` (:mod:`gendsl.numerics.standardise`). (A full whitening was tried: it makes the data's Gaussian part exact at
initialisation, but a zero-initialised network then sits near a saddle and learns the
non-Gaussian part very slowly, so the per-element scaling is used.)
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp

from gendsl.core.signatures import Spec
from gendsl.mechanisms.base import (
    AbstractMechanism,
    NodeContext,
    build_network,
    context_size,
    context_vector,
    split_module,
    vector_network,
)
from gendsl.mechanisms.evolve.model import TIME_FEATURES, Denoiser, Guided, with_context
from gendsl.mechanisms.evolve.processes import build_process
from gendsl.nn.base import training
from gendsl.numerics.standardise import identity_affine

__all__ = ["DEFAULT_HIDDEN", "INPUT_GAIN", "EvolveNode"]


#: hidden widths of the default network when ``net=`` is not given
DEFAULT_HIDDEN = (128, 128, 128)
#: initial scale of the network's sensitivity to the (standardised) point, relative to LeCun's
INPUT_GAIN = 4.0


class EvolveNode(AbstractMechanism):
    """Options, parameters and the learned model of an ``evolve(...)`` spec (abstract)."""

    def __init__(self, ctx: NodeContext, spec: Spec | None = None):
        super().__init__(ctx)
        spec = ctx.spec if spec is None else spec
        self.process = build_process(spec["process"])
        #: the network's resolved spec (``net=``, or the default vector network)
        self.net_spec = vector_network(spec["net"], hidden=DEFAULT_HIDDEN)
        self.context_width = context_size(ctx.parents, ctx.given) + 1 if ctx.given else 0
        self.guidance = float(spec["guidance"]) if ctx.given else 0.0
        # the network's structure from shapes alone: building it eagerly would run (and compile)
        # every random initialiser at each lowering
        skeleton = eqx.filter_eval_shape(self._build, jax.random.key(0))
        self._net_static = eqx.partition(skeleton, lambda leaf: isinstance(leaf, jax.ShapeDtypeStruct))[1]

    # -- parameters -----------------------------------------------------------------------------
    def _build(self, key: jax.Array) -> eqx.Module:
        """The network ``(point, time features, context) -> size`` with a zero output layer.

        Its inputs come in three groups (point, time features, context); each is initialised as
        if it were the network's only input (``input_gain`` of the build), the point's with gain
        :data:`INPUT_GAIN`, so the point is not drowned by the wider time embedding and the first
        features are non-linear in it (at unit gain the network sits near the Gaussian solution
        and learns the data's structure slowly).
        """
        ctx = self.ctx
        widths = [ctx.size, TIME_FEATURES] + ([self.context_width] if self.context_width else [])
        gains = [INPUT_GAIN * (sum(widths) / widths[0]) ** 0.5] + [(sum(widths) / w) ** 0.5 for w in widths[1:]]
        column = jnp.concatenate([jnp.full(w, g) for w, g in zip(widths, gains)])
        return build_network(self.net_spec, sum(widths), ctx.size, key=key, zero_last=True, input_gain=column,
                             event_shape=ctx.shape)

    def init(self, key):
        """Network with a zero output layer (the prediction starts at the data's Gaussian model)
        and the identity standardisation."""
        ctx = self.ctx
        return {"net": split_module(self._build(key))[0], **identity_affine(ctx.shape)}

    def model(self, net_params, guided: bool = False, key: jax.Array | None = None) -> eqx.Module:
        """The per-example ``(t, y, c) -> (y0_hat, eps_hat)`` of these network parameters; with a
        ``key``, the network in training mode (its dropout active, :func:`gendsl.nn.base.training`)."""
        net = eqx.combine(net_params, self._net_static)
        model = Denoiser(net if key is None else training(net, key), self.process, self.ctx.shape)
        return Guided(model, self.guidance) if guided and self.guidance != 0.0 else model

    def context(self, given: dict, keep: jax.Array | None = None) -> jax.Array | None:
        """The ``(n, C + 1)`` conditioning rows (context and "present" flag), or None."""
        return with_context(context_vector(given, self.ctx.parents, self.ctx.given), keep)

    def prior_draws(self, key: jax.Array, n: int) -> jax.Array:
        """``(n, *shape)`` draws of the process's prior (standardised space)."""
        return self.process.prior_sample(key, (n, *self.ctx.shape))
