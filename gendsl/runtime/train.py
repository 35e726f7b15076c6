"""The generic training loop: a pure ``init`` / ``step`` pair, run in jitted ``lax.scan`` chunks.

The loop knows nothing about mechanisms. It receives a loss
``loss_fn(params, node_state, batch, key, group) -> (scalar, node_state)``, the parameter groups
and the group label of every parameter leaf; each step updates each group in turn (generator /
critic) with its own optimiser state, and threads the node state (persistent chains, EMA...).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

__all__ = ["TrainState", "build_trainer", "batch_indices", "FitResult", "run"]


class TrainState(NamedTuple):
    """Everything that changes during training (a PyTree: checkpointable as is)."""

    params: Any
    opt_states: tuple
    node_state: Any
    step: jax.Array


@dataclass
class FitResult:
    """What ``Program.fit`` returns.

    Attributes
    ----------
    params:
        The trained parameters (after each mechanism's ``finalize``, e.g. its EMA).
    losses:
        Training loss per step, shape ``(steps,)``.
    state:
        The final :class:`TrainState` (raw parameters, optimiser and node states).
    train_seconds:
        Wall time of the loop, compilation included.
    """

    params: Any
    losses: np.ndarray
    state: TrainState
    train_seconds: float


def batch_indices(key: jax.Array, step: jax.Array, n: int, batch_size: int) -> jax.Array:
    """Indices of the examples used at ``step``: epochs of a fresh permutation each.

    A pure function of ``(key, step)``, so a resumed run sees the same data order.
    """
    if batch_size >= n:
        return jnp.arange(n)
    per_epoch = n // batch_size
    epoch, within = step // per_epoch, step % per_epoch
    perm = jax.random.permutation(jax.random.fold_in(key, epoch), n)
    return jax.lax.dynamic_slice(perm, (within * batch_size,), (batch_size,))


def build_trainer(loss_fn: Callable, optimizer: optax.GradientTransformation, groups: tuple[str, ...],
                  labels: Any):
    """Return ``(init, step)`` for the given loss, optimiser and parameter groups.

    ``init(params, node_state) -> TrainState``;
    ``step(state, batch, key) -> (state, loss)`` where ``loss`` is the ``main`` group's loss.
    """
    masks = {g: jax.tree_util.tree_map(lambda lab, g=g: lab == g, labels) for g in groups}
    optimizers = {g: (optimizer if len(groups) == 1 else optax.masked(optimizer, masks[g])) for g in groups}

    def init(params, node_state) -> TrainState:
        return TrainState(params, tuple(optimizers[g].init(params) for g in groups), node_state, jnp.zeros((), jnp.int32))

    def step(state: TrainState, batch, key) -> tuple[TrainState, jax.Array]:
        params, node_state = state.params, state.node_state
        opt_states = list(state.opt_states)
        main_loss = jnp.zeros(())
        for i, g in enumerate(groups):
            (loss, node_state), grads = jax.value_and_grad(loss_fn, has_aux=True)(
                params, node_state, batch, jax.random.fold_in(key, i), g)
            updates, opt_states[i] = optimizers[g].update(grads, opt_states[i], params)
            params = optax.apply_updates(params, updates)
            if g == "main":
                main_loss = loss
        return TrainState(params, tuple(opt_states), node_state, state.step + 1), main_loss

    return init, step


def run(step_fn: Callable, state: TrainState, data: dict, n: int, *, steps: int, key: jax.Array,
        batch_size: int, chunk: int | None = None, progress: bool = True,
        on_chunk: Callable[[TrainState, np.ndarray], None] | None = None) -> tuple[TrainState, np.ndarray, float]:
    """Run ``steps`` steps of ``step_fn`` from ``state`` in jitted scan chunks.

    The batch of step ``s`` and its key are pure functions of ``(key, s)``.

    Returns ``(state, losses, seconds)`` with ``losses`` of shape ``(steps - start,)``.
    """
    data_key, loss_key = jax.random.split(key)
    start = int(state.step)
    total = steps
    chunk = chunk or max(1, min(200, (total - start) // 20 or 1))
    bs = min(batch_size, n)

    def one(carry: TrainState, _):
        s = carry.step
        idx = batch_indices(data_key, s, n, bs)
        batch = jax.tree_util.tree_map(lambda a: a[idx], data)
        new, loss = step_fn(carry, batch, jax.random.fold_in(loss_key, s))
        active = s < total
        new = jax.tree_util.tree_map(lambda a, b: jnp.where(active, a, b), new, carry)
        return new, loss

    @jax.jit
    def run_chunk(carry):
        return jax.lax.scan(one, carry, None, length=chunk)

    losses = []
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, initial=start, desc="fit", unit="step", dynamic_ncols=True, leave=True)
    t0 = time.perf_counter()
    done = start
    while done < total:
        state, chunk_losses = run_chunk(state)
        chunk_losses = np.asarray(chunk_losses)[: total - done]
        losses.append(chunk_losses)
        advanced = len(chunk_losses)
        done += advanced
        if on_chunk is not None:
            on_chunk(state, chunk_losses)
        if bar is not None:
            bar.update(advanced)
            bar.set_postfix(loss=f"{float(np.mean(chunk_losses[-min(50, advanced):])):.4f}")
    if bar is not None:
        bar.close()
    seconds = time.perf_counter() - t0
    return state, (np.concatenate(losses) if losses else np.zeros(0)), seconds
