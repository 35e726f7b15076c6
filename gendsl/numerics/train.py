"""The generic training loop: a pure ``init`` / ``step`` pair, run in jitted ``lax.scan`` chunks.

Faults lose no work: after each chunk a non-finite loss rolls the run back to the chunk's start
and lowers the learning rate; checkpoints are written every ``checkpoint_every`` steps, and a
resumed run ends bitwise equal to an uninterrupted one (the batch and key of step ``s`` are pure
functions of the run key and ``s``; chunk boundaries depend only on the total).

The loop knows nothing about mechanisms. It receives a loss
``loss_fn(params, node_state, batch, key, group) -> (scalar, node_state)``, the parameter groups
and the group label of every parameter leaf; each step updates each group in turn (generator /
critic) with its own optimiser state, and threads the node state (persistent chains, EMA...).
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from gendsl.errors import GenRuntimeError
from gendsl.numerics.devices import check_divisible, replicated, shard_leading

__all__ = ["TrainState", "build_trainer", "batch_indices", "epoch_permutation", "FitResult", "NonFiniteLoss",
           "Validation", "ValidationCurve", "chunk_size", "build_chunk", "run"]


class TrainState(NamedTuple):
    """Everything that changes during training (a PyTree: checkpointable as is)."""

    params: Any
    opt_states: tuple
    node_state: Any
    step: jax.Array
    lr_scale: jax.Array  # multiplies every update; lowered after a non-finite loss


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
    validation:
        With a validation set: the :class:`ValidationCurve` (``.params`` are then those of its
        best evaluation); else None.
    """

    params: Any
    losses: np.ndarray
    state: TrainState
    train_seconds: float
    validation: "ValidationCurve | None" = None


class Validation(NamedTuple):
    """Held-out evaluation during training.

    Attributes
    ----------
    evaluate:
        ``evaluate(state) -> scalar``: the held-out loss of a training state (compiled by the caller).
    every:
        Steps between evaluations (training runs in compiled chunks of this many steps).
    patience:
        Stop after this many evaluations without a new best; None: run every step.
    """

    evaluate: Callable[[TrainState], jax.Array]
    every: int
    patience: int | None = None


class ValidationCurve(NamedTuple):
    """What the held-out evaluations saw.

    Attributes
    ----------
    steps, losses:
        ``(k,)`` the step after which each evaluation ran, and its held-out loss.
    best_step:
        Step of the lowest finite held-out loss (0 when none was finite).
    best_state:
        The training state at ``best_step``.
    stopped_early:
        Whether training stopped for lack of improvement before its last step.
    """

    steps: np.ndarray
    losses: np.ndarray
    best_step: int
    best_state: TrainState
    stopped_early: bool


def batch_indices(key: jax.Array, step: jax.Array, n: int, batch_size: int) -> jax.Array:
    """Indices of the examples used at ``step``: epochs of a fresh permutation each.

    A pure function of ``(key, step)``, so a resumed run sees the same data order.
    """
    if batch_size >= n:
        return jnp.arange(n)
    per_epoch = n // batch_size
    epoch, within = step // per_epoch, step % per_epoch
    return jax.lax.dynamic_slice(epoch_permutation(key, epoch, n), (within * batch_size,), (batch_size,))


def epoch_permutation(key: jax.Array, epoch: jax.Array, n: int) -> jax.Array:
    """The order of the examples in ``epoch`` (what :func:`batch_indices` slices)."""
    return jax.random.permutation(jax.random.fold_in(key, epoch), n)


def build_trainer(loss_fn: Callable, optimizer: optax.GradientTransformation, groups: tuple[str, ...],
                  labels: Any):
    """Return ``(init, step)`` for the given loss, optimiser and parameter groups.

    ``groups`` is the order of updates within one step; a group listed ``k`` times is updated
    ``k`` times per step (e.g. ``("main", "critic", "critic")``), with one optimiser state per
    group. An update of one group never moves the parameters of another.

    ``init(params, node_state) -> TrainState``;
    ``step(state, batch, key) -> (state, loss)`` where ``loss`` is the ``main`` group's loss.
    """
    names = tuple(dict.fromkeys(groups))
    masks = {g: jax.tree_util.tree_map(lambda lab, g=g: lab == g, labels) for g in names}
    optimizers = {g: (optimizer if len(names) == 1 else optax.masked(optimizer, masks[g])) for g in names}

    def init(params, node_state) -> TrainState:
        return TrainState(params, tuple(optimizers[g].init(params) for g in names), node_state,
                          jnp.zeros((), jnp.int32), jnp.ones((), jnp.float32))

    def step(state: TrainState, batch, key) -> tuple[TrainState, jax.Array]:
        params, node_state = state.params, state.node_state
        opt_states = list(state.opt_states)
        main_loss = jnp.zeros(())
        for i, g in enumerate(groups):
            (loss, node_state), grads = jax.value_and_grad(loss_fn, has_aux=True)(
                params, node_state, batch, jax.random.fold_in(key, i), g)
            j = names.index(g)
            updates, opt_states[j] = optimizers[g].update(grads, opt_states[j], params)
            if len(names) > 1:  # optax.masked passes the raw gradient through outside the mask
                updates = jax.tree_util.tree_map(lambda u, m: u if m else jnp.zeros_like(u), updates, masks[g])
            updates = jax.tree_util.tree_map(lambda u: (state.lr_scale * u).astype(u.dtype), updates)
            params = optax.apply_updates(params, updates)
            if g == "main":
                main_loss = loss
        return TrainState(params, tuple(opt_states), node_state, state.step + 1, state.lr_scale), main_loss

    return init, step


class NonFiniteLoss(GenRuntimeError):
    """Training kept producing non-finite losses; ``.state`` is the last good state."""

    def __init__(self, message: str, state: TrainState, losses: np.ndarray):
        super().__init__(message)
        self.state = state
        self.losses = losses


def chunk_size(total: int) -> int:
    """Steps per jitted chunk: a function of the run's total only (so resumed runs align)."""
    return max(1, min(200, total // 20 or 1))


def build_chunk(step_fn: Callable, n: int, batch_size: int, chunk: int, mesh=None) -> Callable:
    """The jitted ``chunk(state, data, data_key, loss_key, total) -> (state, losses)``: ``chunk``
    steps of ``step_fn`` in one ``lax.scan`` (steps at or past ``total`` leave the state as it is).

    It depends on the shapes only (keys and the total are arguments), so a caller that keeps it
    trains again with new keys, data of the same shape or another number of steps without
    compiling again.
    """
    bs = min(batch_size, n)
    per_epoch = max(1, n // bs)

    @jax.jit
    def run_chunk(carry, data, data_key, loss_key, total):
        # the batches of batch_indices, with each epoch's permutation drawn once (not at every step)
        def one(c, _):
            carry, perm = c
            s = carry.step
            if bs >= n:
                idx = jnp.arange(n)
            else:
                perm = jax.lax.cond(s % per_epoch == 0, lambda: epoch_permutation(data_key, s // per_epoch, n),
                                    lambda: perm)
                idx = jax.lax.dynamic_slice(perm, ((s % per_epoch) * bs,), (bs,))
            batch = shard_leading(jax.tree_util.tree_map(lambda a: a[idx], data), mesh)
            new, loss = step_fn(carry, batch, jax.random.fold_in(loss_key, s))
            active = s < total
            new = jax.tree_util.tree_map(lambda a, b: jnp.where(active, a, b), new, carry)
            return (new, perm), loss

        first = epoch_permutation(data_key, carry.step // per_epoch, n)
        (carry, _), losses = jax.lax.scan(one, (carry, first), None, length=chunk)
        return carry, losses

    return run_chunk


def _summary(done: int, seconds: float, history: list, curve: ValidationCurve | None) -> str:
    """The line printed when a run with a progress bar ends."""
    recent = np.concatenate(history)[-50:] if history else np.zeros(0)
    line = f"fit: {done} steps in {seconds:.1f} s, training loss {float(np.mean(recent)):.4g}" if len(recent) else \
        f"fit: {done} steps in {seconds:.1f} s"
    if curve is not None and np.isfinite(curve.losses).any():
        line += (f"; best validation loss {float(np.nanmin(curve.losses)):.4g} at step {curve.best_step}"
                 + (" (stopped early)" if curve.stopped_early else ""))
    return line


def run(step_fn: Callable, state: TrainState, data: dict, n: int, *, steps: int, key: jax.Array,
        batch_size: int, losses: np.ndarray | None = None, progress: bool = True,
        checkpoint: Callable[[TrainState, np.ndarray], None] | None = None, checkpoint_every: int | None = None,
        max_retries: int = 3, lr_backoff: float = 0.5, mesh=None,
        chunks: dict | None = None, validation: Validation | None = None,
        tracking: dict | None = None, log: Callable[[dict], None] | None = None,
        ) -> tuple[TrainState, np.ndarray, float, ValidationCurve | None]:
    """Run ``step_fn`` from ``state`` until ``state.step == steps``, in jitted scan chunks.

    Parameters
    ----------
    chunks:
        A cache of compiled chunks (:func:`build_chunk`) kept by the caller across runs of the
        same ``step_fn``: a later run with the same shapes compiles nothing. None: compile anew.
    validation:
        Evaluate the held-out loss every ``validation.every`` steps (at the ends of compiled
        chunks of that length), keep the best state, and stop after ``validation.patience``
        evaluations without improvement.
    losses:
        Losses of the steps already taken (when resuming), kept in front of the new ones.
    checkpoint, checkpoint_every:
        ``checkpoint(state, losses, tracking)`` is called at the first chunk end after every
        ``checkpoint_every`` steps, and at the end; ``tracking`` is what the validation has seen
        (None without validation: ``best_state``, ``best_loss``, ``best_step``, ``since``,
        ``steps``, ``losses``), handed back as ``tracking`` to resume it.
    log:
        ``log(row)`` at every chunk end (every ``validation.every`` steps with validation), with
        ``row = {"step", "loss" (mean over the chunk), "validation_loss" (or None), "seconds"}``.
    max_retries, lr_backoff:
        A chunk with a non-finite loss is undone and retried with the learning rate times
        ``lr_backoff``; after ``max_retries`` failures in a row :class:`NonFiniteLoss` is raised.

    Returns ``(state, losses, seconds, curve)``: ``losses`` of shape ``(steps taken,)`` and the
    :class:`ValidationCurve` (None without validation).
    """

    data_key, loss_key = jax.random.split(key)
    total = steps
    chunk = validation.every if validation is not None else chunk_size(total)
    bs = min(batch_size, n)
    check_divisible(bs, mesh, "the batch size")
    if mesh is not None:
        state = jax.device_put(state, replicated(mesh))
        if jax.process_count() == 1:  # multi-host data arrive already split across hosts
            data = jax.device_put(data, replicated(mesh))

    cache_key = (n, bs, chunk, mesh)
    run_chunk = (chunks or {}).get(cache_key) or build_chunk(step_fn, n, bs, chunk, mesh)
    if chunks is not None:
        chunks[cache_key] = run_chunk

    history = [np.asarray(losses, dtype=np.float32)] if losses is not None and len(losses) else []
    done = int(state.step)
    bar = None
    if progress and done < total:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, initial=done, desc="fit", unit="step", dynamic_ncols=True, leave=True)
    t0 = time.perf_counter()
    failures, last_saved = 0, done
    curve_steps, curve_losses, best, since, stopped = [], [], None, 0, False
    if tracking is not None:  # a resumed run: what the validation saw before the interruption
        curve_steps, curve_losses = list(tracking["steps"]), list(tracking["losses"])
        since = int(tracking["since"])
        if tracking["best_step"]:
            best = (float(tracking["best_loss"]), tracking["best_state"], int(tracking["best_step"]))
    while done < total:
        new_state, chunk_losses = run_chunk(state, data, data_key, loss_key, total)
        chunk_losses = np.asarray(chunk_losses)[: total - done]
        if not np.all(np.isfinite(chunk_losses)):
            failures += 1
            bad = done + int(np.argmax(~np.isfinite(chunk_losses)))
            if failures > max_retries:
                if bar is not None:
                    bar.close()
                raise NonFiniteLoss(
                    f"the training loss is non-finite at step {bad} even after lowering the learning rate "
                    f"{max_retries} times (to {float(state.lr_scale):.3g} of its start); stopped at step {done} "
                    f"with the last good parameters", state, np.concatenate(history) if history else np.zeros(0))
            state = state._replace(lr_scale=state.lr_scale * lr_backoff)
            message = (f"non-finite training loss at step {bad}: rolled back to step {done} and lowered the "
                       f"learning rate to {float(state.lr_scale):.3g} of its start")
            bar.write(message) if bar is not None else warnings.warn(message, RuntimeWarning, stacklevel=2)
            continue
        failures = 0
        state = new_state
        history.append(chunk_losses)
        done += len(chunk_losses)
        if bar is not None:
            bar.update(len(chunk_losses))
            bar.set_postfix(loss=f"{float(np.mean(chunk_losses[-50:])):.4f}")
        stop, value = False, None
        if validation is not None:
            value = float(validation.evaluate(state))
            curve_steps.append(done)
            curve_losses.append(value)
            if np.isfinite(value) and (best is None or value < best[0]):
                best, since = (value, state, done), 0
            else:
                since += 1
            stop = validation.patience is not None and since >= validation.patience and done < total
            if bar is not None:
                bar.set_postfix(loss=f"{float(np.mean(chunk_losses[-50:])):.4f}", val=f"{value:.4f}")
        if log is not None:
            log({"step": done, "loss": float(np.mean(chunk_losses)), "validation_loss": value,
                 "seconds": time.perf_counter() - t0})
        if checkpoint is not None and (stop or done >= total or
                                       (checkpoint_every and done - last_saved >= checkpoint_every)):
            seen = None
            if validation is not None:
                seen = {"best_state": best[1] if best is not None else state,
                        "best_loss": best[0] if best is not None else None, "best_step": best[2] if best is not None else 0,
                        "since": since, "steps": [int(s) for s in curve_steps], "losses": [float(v) for v in curve_losses]}
            checkpoint(state, np.concatenate(history), seen)
            last_saved = done
        if stop:
            stopped = True
            break
    seconds = time.perf_counter() - t0
    curve = None
    if validation is not None:
        _, best_state, best_step = best if best is not None else (np.nan, state, 0)
        curve = ValidationCurve(np.asarray(curve_steps, np.int64), np.asarray(curve_losses, np.float64), best_step,
                                best_state, stopped)
    if bar is not None:
        bar.close()
        bar.write(_summary(done, seconds, history, curve))
    return state, (np.concatenate(history) if history else np.zeros(0, np.float32)), seconds, curve
