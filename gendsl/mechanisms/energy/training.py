"""How an energy node trains: its objective on a batch, the state training carries (the base's,
the data's running moments, ``cd``'s replay buffer, the moving average of the weights) and the
parameters it keeps.

Functions of the node (:class:`~gendsl.mechanisms.energy.node.Energy`), as
:mod:`~gendsl.mechanisms.energy.sampling` is for its draws: the node's ``init_train_state``,
``train_loss`` and ``finalize`` are these. Coordinates: the network reads standardised ``q`` (the
node's ``_unconstrain``); the reference (loc, scale) of a step is the data's moments so far.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from gendsl.mechanisms.energy import sampling, tempered
from gendsl.mechanisms.energy.objectives import cd_loss, clip_gradient, dsm_loss, ssm_loss
from gendsl.numerics import mcmc
from gendsl.numerics.ema import ema_init, ema_update

__all__ = ["objective", "init_state", "step_loss", "kept_params"]


def _frozen_base(params) -> dict:
    """Parameters with the base's gradient stopped (the base trains by its own objective)."""
    if "base" not in params:
        return params
    return {**params, "base": jax.lax.stop_gradient(params["base"])}


def objective(node, params, u: jax.Array, given: dict, key: jax.Array, buffer: jax.Array | None):
    """The energy's own loss on the batch ``u`` ``(n, dim)`` (sampling coordinates) and the new
    replay buffer ``(size, dim)`` (or ``None``): ``(scalar, buffer)``."""
    obj = node.objective
    if obj.name in ("dsm", "ssm"):
        frozen = _frozen_base(params)
        logp = lambda q, g, *sigma: node._log_density_u(frozen, q, g, *sigma)  # noqa: E731
        if obj.name == "dsm":
            return dsm_loss(logp, u, given, key, node.sigmas), buffer
        return ssm_loss(logp, u, given, key, obj["projections"]), buffer
    k_pick, k_fresh, k_coin, k_run = jax.random.split(key, 4)
    n = u.shape[0]
    u0 = node._start(jax.lax.stop_gradient(params), k_fresh, n, given)
    if buffer is not None:
        idx = jax.random.randint(k_pick, (n,), 0, buffer.shape[0])
        reinit = jax.random.uniform(k_coin, (n,)) < obj["reinit"]
        u0 = jnp.where(reinit[:, None], u0, buffer[idx])
    negatives = sampling.negatives(node, params, u0, given, k_run, obj["steps"])
    if buffer is not None:
        buffer = buffer.at[idx].set(negatives.astype(buffer.dtype))
    clipped = {**params, "energy": clip_gradient(params["energy"], obj["clip"])}
    loss = cd_loss(lambda q, g: node._energy_u(clipped, q, g), u, negatives, given, obj["alpha"])
    return loss, buffer


def init_state(node, key: jax.Array, params, persistent: bool = True) -> dict:
    """The training state: ``{"base": the base's state}`` when the base trains, ``{"moments"}`` of
    a standardised energy, ``{"buffer": (size, dim)}`` for ``cd`` (when ``persistent``) and
    ``{"ema", "step"}`` for a network energy with ``ema > 0``."""
    k_base, k_buffer = jax.random.split(key)
    state = {}
    if node.base_trains:
        state["base"] = node.base.init_train_state(k_base, params["base"])
    if "reference" in params:
        state["moments"] = tempered.init_moments(node.dim)
    if persistent and node.objective is not None and node.objective.name == "cd":
        state["buffer"] = mcmc.uniform_starts(k_buffer, (node.objective["buffer"], node.dim))
    if node.objective is not None and node.ema > 0:
        state["ema"], state["step"] = ema_init(params["energy"]), jnp.zeros((), jnp.int32)
    return state


def step_loss(node, params, state: dict, x: jax.Array, given: dict, key: jax.Array, group: str = "main"):
    """One step's loss on the batch ``x`` ``(n, *shape)`` and the new state: the base's objective
    (its own groups too) plus, for ``main``, the energy's, under the standardisation of the data's
    moments so far; the moving average takes in the weights. ``(scalar, state)``."""
    k_base, k_obj = jax.random.split(key)
    state = dict(state)
    total = jnp.zeros(())
    if node.base_trains:
        base_loss, state["base"] = node.base.train_loss(params["base"], state["base"], x, given, k_base, group)
        total = total + base_loss
    if group != "main" or node.objective is None:
        return total, state
    u = node._raw_u(x)
    if "moments" in state:  # the standardisation of this step: the data's moments so far
        state["moments"] = tempered.update_moments(state["moments"], u)
        params = {**params, "reference": tempered.fitted_reference(state["moments"])}
    loss, buffer = objective(node, params, node._unconstrain(params, x), given, k_obj, state.get("buffer"))
    if buffer is not None:
        state["buffer"] = buffer
    if "ema" in state:
        state["ema"] = ema_update(state["ema"], params["energy"], state["step"], node.ema)
        state["step"] = state["step"] + 1
    return total + loss, state


def kept_params(node, params, state: dict) -> dict:
    """The trained parameters to keep: the moving average of the energy's weights (``ema``), the
    data's reference from the running moments, the base's own."""
    if "ema" in state:
        params = {**params, "energy": state["ema"]}
    if "moments" in state:
        params = {**params, "reference": tempered.fitted_reference(state["moments"])}
    if "base" in params:
        return {**params, "base": node.base.finalize(params["base"], state.get("base", ()))}
    return params
