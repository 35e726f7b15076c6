"""Implicit generators trained adversarially: the ``generator`` map (WGAN-GP, Gulrajani et al. 2017).

``x = G(z, context)`` with ``z`` from the base (``latent`` elements; the variable's size by
default), one network evaluation per draw and no likelihood (kind ``unavailable``). A critic
``f(y, context)`` estimates the Wasserstein-1 distance between data and draws:

- critic (group ``"critic"``): ``E f(G(z)) - E f(y) + penalty * E (|grad f(y_hat)| - 1)^2`` at
  random interpolates ``y_hat`` of real and generated points;
- generator (group ``"main"``): ``-E f(G(z))``.

Both work on the flat real ``y`` (the data through the inverse link for ``positive`` / ``unit``
variables). Each loss stops the gradient into the other group's parameters. ``fit`` updates the
groups in turn every step, and :attr:`groups` lists ``"critic"`` ``critic_steps`` times, so the
critic takes ``critic_steps`` updates (each with fresh generated points) per generator update.

The training state is an exponential moving average of the generator's parameters (decay
``ema``), updated at each generator step; ``finalize`` hands it back as the generator after
``fit`` (a standard stabiliser of adversarial training: the last iterate oscillates).
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp

from gendsl.core.signatures import WIDTH_LIMIT, Param, Signature
from gendsl.errors import GenRuntimeError, GenSemanticError
from gendsl.mechanisms.base import build_network, check_vector_network, vector_network
from gendsl.mechanisms.pushforward.node import PushforwardNode, initialise, static_part
from gendsl.numerics.ema import ema_init, ema_update

__all__ = ["GeneratorPushforward", "networks"]

#: ``generator(...)`` in the language
GENERATOR_SIGNATURE = Signature("generator", "map", (
        Param("net", "network", None), Param("critic", "network", None),
        Param("latent", "int", 0, limit=WIDTH_LIMIT, doc="latent dimension (0: the variable's size)"),
        Param("penalty", "number", 10.0), Param("critic_steps", "int", 5, limit=1000),
        Param("ema", "number", 0.99, doc="decay of the moving average of the generator kept for sampling (0: none)"),
    ), "implicit generator trained adversarially (WGAN-GP)")


def networks(in_size: int, dim: int, cond_dim: int, net, critic, latent_shape: tuple[int, ...],
             event_shape: tuple[int, ...], *, key: jax.Array) -> dict:
    """The generator ``(latent + C) -> D``, its input starting with a latent of shape ``latent_shape``,
    and the critic ``(D + C) -> 1``, its input starting with the variable (shape ``event_shape``)
    (resolved vector network specs)."""
    g_key, c_key = jax.random.split(key)
    return {"generator": build_network(net, in_size, dim, key=g_key, event_shape=latent_shape),
            "critic": build_network(critic, dim + cond_dim, 1, key=c_key, event_shape=event_shape)}


class GeneratorPushforward(PushforwardNode):
    """A pushforward through a non-invertible network (``generator(net=, critic=, ...)``)."""

    kind = "unavailable"
    loss_name = "adversarial (wgan-gp)"
    sampler_name = "one-shot"

    def __init__(self, ctx):
        spec = ctx.spec["map"]
        latent = int(spec["latent"])
        if latent < 0:
            raise GenSemanticError(f"generator(latent=...) of '{ctx.name}' must be >= 0, got {latent}", ctx.span)
        super().__init__(ctx, latent_shape=(latent,) if latent else None)
        if self.base_name is not None and latent and latent != self.base_size:
            raise GenSemanticError(f"generator(latent={latent}) of '{ctx.name}' disagrees with its base "
                                   f"'{self.base_name}', which has {self.base_size} elements; drop latent=", ctx.span)
        if spec["critic_steps"] < 1 or spec["penalty"] < 0 or not 0 <= spec["ema"] < 1:
            raise GenSemanticError(f"generator() of '{ctx.name}' needs critic_steps >= 1, penalty >= 0 and "
                                   f"0 <= ema < 1", ctx.span)
        self.penalty, self.ema = float(spec["penalty"]), float(spec["ema"])
        self.groups = ("main",) + ("critic",) * int(spec["critic_steps"])
        latent_shape = (latent,) if latent else ctx.shape
        self._recipe = (self.base_size + self.cond_dim, self.dim, self.cond_dim, vector_network(spec["net"]),
                        vector_network(spec["critic"]), latent_shape, ctx.shape)
        self._static = static_part(networks, self._recipe)

    def init(self, key):
        return initialise(networks, self._recipe, key)

    def param_labels(self, params):
        return {g: jax.tree_util.tree_map(lambda _, g=g: "main" if g == "generator" else "critic", params[g])
                for g in ("generator", "critic")}

    @classmethod
    def check_map(cls, name: str, map_spec, span, shape: tuple) -> None:
        """The generator and the critic are vector networks; the generator reads the latent (the
        variable's shape unless ``latent=`` is given), the critic the variable."""
        latent = int(map_spec["latent"])
        for option, event in (("net", (latent,) if latent else shape), ("critic", shape)):
            check_vector_network(map_spec[option], f"the {'critic' if option == 'critic' else 'network'} of "
                                 f"generator() for '{name}'", span, option=option, event_shape=event)

    @classmethod
    def map_cost(cls, spec, vtype) -> int:
        """One generator evaluation per draw."""
        return 1

    # -- networks on batches -------------------------------------------------------------------
    def _apply(self, which: str, params, inputs: jax.Array, context: jax.Array | None) -> jax.Array:
        net = eqx.combine(params[which], self._static[which])
        if context is not None:
            inputs = jnp.concatenate([inputs, context], axis=-1)
        return jax.vmap(net)(inputs)

    def generate(self, params, key, n, given) -> jax.Array:
        """Flat generated reals ``(n, D)``."""
        return self._apply("generator", params, self.base_sample(key, n, given), self.context(given))

    def sample(self, params, key, n, given):
        return self.to_data(self.generate(params, key, n, given))[0]

    def log_prob(self, params, x, given):
        raise GenRuntimeError(f"log_prob is unavailable: '{self.ctx.name}' is made by a generator, which has no "
                              "likelihood; compare samples instead (e.g. gendsl.metrics.energy_distance)",
                              self.ctx.span)

    # -- losses --------------------------------------------------------------------------------
    def generator_loss(self, params, x, given, key):
        """``-E f(G(z))`` with the critic held fixed (scalar)."""
        params = {"generator": params["generator"], "critic": jax.lax.stop_gradient(params["critic"])}
        fake = self.generate(params, key, x.shape[0], given)
        return -jnp.mean(self._apply("critic", params, fake, self.context(given)))

    def critic_loss(self, params, x, given, key):
        """Negative Wasserstein estimate plus the gradient penalty, the generator held fixed (scalar)."""
        params = {"generator": jax.lax.stop_gradient(params["generator"]), "critic": params["critic"]}
        g_key, e_key = jax.random.split(key)
        n = x.shape[0]
        real, _ = self.from_data(x)
        fake = self.generate(params, g_key, n, given)
        context = self.context(given)
        eps = jax.random.uniform(e_key, (n, 1), real.dtype)
        mixed = eps * real + (1.0 - eps) * fake

        def critic_one(y, c):
            return self._apply("critic", params, y[None], None if c is None else c[None])[0, 0]

        grads = jax.vmap(jax.grad(critic_one))(mixed, context)
        norms = jnp.sqrt(jnp.sum(grads**2, axis=-1) + 1e-12)
        critic = self._apply("critic", params, jnp.concatenate([fake, real]),
                             None if context is None else jnp.concatenate([context, context]))[:, 0]
        return jnp.mean(critic[:n]) - jnp.mean(critic[n:]) + self.penalty * jnp.mean((norms - 1.0) ** 2)

    def loss(self, params, x, given, key):
        return self.generator_loss(params, x, given, key)

    def init_train_state(self, key, params):
        """The moving average of the generator's parameters."""
        return ema_init(params["generator"])

    def train_loss(self, params, state, x, given, key, group="main"):
        if group == "critic":
            return self.critic_loss(params, x, given, key), state
        if group == "main":
            state = ema_update(state, params["generator"], None, self.ema)
            return self.generator_loss(params, x, given, key), state
        return jnp.zeros(()), state

    def finalize(self, params, state):
        """The generator's moving average (sampling from it is steadier than from the last iterate)."""
        return {"generator": state, "critic": params["critic"]}
