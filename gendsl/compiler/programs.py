"""The JAX programs a lowered graph compiles to: batched ancestral sampling, the joint
log-density and the joint training loss.

Each builder takes a :class:`~gendsl.compiler.lower.Lowered` graph and returns a pure function
of parameters, PRNG keys and arrays with a leading example axis ``n``; the caller jits and
caches it (:class:`~gendsl.program.Program`). Nodes are visited in topological order;
deterministic quantities are computed from their parents, each stochastic node by its
mechanism with its parents' values as context.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from gendsl.compiler.lower import Lowered

__all__ = ["parents_of", "deterministic_values", "factor_values", "complete", "ancestral_sampler", "joint_log_prob",
           "joint_train_loss", "joint_loss"]


def parents_of(node, values: dict) -> dict:
    """The values of ``node``'s parents, each ``(n, *shape)``."""
    return {p: values[p] for p in node.mechanism.ctx.parents}


def deterministic_values(node, values: dict, n: int) -> jax.Array:
    """A deterministic node's ``(n, *shape)`` values from its parents' (broadcast when it has none)."""
    env = {p: values[p] for p in node.var.parents if p in values}
    if env:
        return jax.vmap(node.compute)(env)
    return jnp.broadcast_to(node.compute({}), (n, *node.type.shape))


def factor_values(factor, values: dict, n: int) -> jax.Array:
    """A ``target +=`` term per example: ``(n,)``."""
    env = {p: values[p] for p in factor.parents if p in values}
    if env:
        return jax.vmap(factor.compute)(env)
    return jnp.broadcast_to(factor.compute({}), (n,))


def complete(lowered: Lowered, values: dict, n: int) -> dict:
    """``values`` with every deterministic quantity of the density not given computed, each
    ``(n, *shape)`` (``generated`` ones are outside the density and left out)."""
    values = dict(values)
    for node in lowered.nodes:
        if node.var.role == "deterministic" and node.var.scope != "generated" and node.name not in values:
            values[node.name] = deterministic_values(node, values, n)
    return values


def ancestral_sampler(lowered: Lowered, n: int, clamped: tuple[str, ...] = ()) -> Callable:
    """``draw(params, key, inputs) -> (values, info)``: ``n`` joint draws, every node drawn given
    its parents except the ``clamped`` ones (whose values come in ``inputs`` with the model's
    inputs); ``info`` maps node names to what their samplers measured."""
    def draw(params, key, inputs):
        values, info = dict(inputs), {}
        keys = jax.random.split(key, max(1, len(lowered.nodes)))
        for node, k in zip(lowered.nodes, keys):
            if node.name in clamped:
                continue
            if node.var.role == "deterministic":
                values[node.name] = deterministic_values(node, values, n)
            elif node.mechanism is not None:
                values[node.name], info[node.name] = node.mechanism.sample_with_info(
                    params.get(node.name, {}), k, n, parents_of(node, values))
        return values, info

    return draw


def joint_log_prob(lowered: Lowered) -> Callable:
    """``log_prob(params, arrays) -> (n,)``: every modelled node's log-density of its value given
    its parents, plus the ``target +=`` terms (``generated`` nodes are outside it)."""
    def joint(params, arrays):
        n = next(iter(arrays.values())).shape[0]
        values = complete(lowered, arrays, n)
        return (sum(node.mechanism.log_prob(params.get(node.name, {}), values[node.name], parents_of(node, values))
                    for node in lowered.modelled)
                + sum(factor_values(f, values, n) for f in lowered.factors))

    return joint


def joint_loss(lowered: Lowered) -> Callable:
    """``loss(params, arrays, key) -> scalar``: the sum of every node's loss, parents teacher-forced."""
    def loss(params, arrays, key):
        n = next(iter(arrays.values())).shape[0]
        values = complete(lowered, arrays, n)
        keys = jax.random.split(key, max(1, len(lowered.modelled)))
        return sum(node.mechanism.loss(params.get(node.name, {}), values[node.name], parents_of(node, values), k)
                   for node, k in zip(lowered.modelled, keys))

    return loss


def joint_train_loss(lowered: Lowered) -> Callable:
    """``loss(params, node_state, batch, key, group) -> (scalar, new node_state)``: every node's
    training loss for optimiser ``group`` with its training state (an EMA, a replay buffer...)."""
    def loss_fn(params, node_state, batch, key, group):
        n = next(iter(batch.values())).shape[0]
        values = complete(lowered, batch, n)
        total, new_state = jnp.zeros(()), dict(node_state)  # a generated node's state stays as it is
        keys = jax.random.split(key, max(1, len(lowered.modelled)))
        for node, k in zip(lowered.modelled, keys):
            loss, new_state[node.name] = node.mechanism.train_loss(
                params.get(node.name, {}), node_state[node.name], values[node.name], parents_of(node, values), k, group)
            total = total + loss
        return total, new_state

    return loss_fn
