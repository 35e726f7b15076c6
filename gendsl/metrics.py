"""Evaluation numbers: energy distance, its noise floor, and wall-clock timing.

The energy distance between laws P and Q is D(P, Q) = 2E|X-Y| - E|X-X'| - E|Y-Y'| >= 0, zero
iff P = Q. From samples it is estimated with all pairwise Euclidean distances, computed in
jitted blocks so that 10k x 10k pairs never sit in memory at once.

Two estimators matter:

- unbiased (``unbiased=True``, the default): U-statistics for the within-set terms, so the
  estimate has expectation exactly D(P, Q) and is ~0 (of either sign) when P = Q;
- plug-in (``unbiased=False``): V-statistics, whose expectation for P = Q is
  E|X-X'| (1/n + 1/m) > 0. This positive value for two equal-size samples of the data law is the
  *noise floor* (:func:`noise_floor`), and sample quality is reported as a multiple of it
  (:func:`floor_multiple`): about 1 for a perfect model, larger for worse ones. The unbiased
  floor has expectation 0, so ratios must use the plug-in estimator on both sides.
"""

from __future__ import annotations

import math
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["energy_distance", "noise_floor", "floor_multiple", "time_call", "loss_spikes", "real_matrix"]


def real_matrix(model, arrays: dict) -> np.ndarray | None:
    """The observed real-valued variables of ``model`` in ``arrays``, flattened and joined:
    ``(n, D)`` float64, or None when there are none."""
    parts = [np.asarray(arrays[v.name]).reshape(len(arrays[v.name]), -1) for v in model.by_role("observed")
             if v.type.base in ("real", "positive", "unit") and v.name in arrays]
    return np.concatenate(parts, axis=1).astype(np.float64) if parts else None

_BLOCK_ELEMENTS = 1 << 22  # block * block * d floats per distance block (16 MiB in float32)


def _as_points(a: Any, name: str) -> np.ndarray:
    arr = np.asarray(a, dtype=np.float32)
    if arr.ndim == 0:
        raise ValueError(f"{name} must have a leading sample axis, got a scalar")
    return arr.reshape(arr.shape[0], -1)


def _block_size(d: int, n_max: int) -> int:
    """A power of two so that one ``(block, block, d)`` difference block stays small."""
    by_memory = 2 ** int(math.log2(max(math.sqrt(_BLOCK_ELEMENTS / d), 8)))
    by_size = 2 ** math.ceil(math.log2(max(n_max, 8)))
    return min(by_memory, by_size, 1024)


def _blocked(a: np.ndarray, block: int) -> tuple[np.ndarray, np.ndarray]:
    """Pad ``(n, d)`` with zero rows to ``(k, block, d)``, with a ``(k, block)`` 0/1 mask."""
    n, d = a.shape
    k = -(-n // block)
    padded = np.zeros((k * block, d), dtype=np.float32)
    padded[:n] = a
    mask = np.zeros(k * block, dtype=np.float32)
    mask[:n] = 1.0
    return padded.reshape(k, block, d), mask.reshape(k, block)


@jax.jit
def _block_sums(a: jax.Array, a_mask: jax.Array, b: jax.Array, b_mask: jax.Array) -> jax.Array:
    """Sums of |a_i - b_j| over every pair of blocks.

    Parameters
    ----------
    a, a_mask:
        ``(ka, block, d)`` points and ``(ka, block)`` mask of real (unpadded) rows.
    b, b_mask:
        ``(kb, block, d)`` and ``(kb, block)``.

    Returns
    -------
    ``(ka, kb)`` partial sums, to be added up in float64 by the caller.
    """

    def row(args):
        ai, ai_mask = args

        def col(carry, args2):
            bj, bj_mask = args2
            diff = ai[:, None, :] - bj[None, :, :]
            dist = jnp.sqrt(jnp.sum(diff * diff, axis=-1))
            return carry, jnp.sum(dist * (ai_mask[:, None] * bj_mask[None, :]))

        return jax.lax.scan(col, None, (b, b_mask))[1]

    return jax.lax.map(row, (a, a_mask))


def _mean_distance_sum(a: np.ndarray, b: np.ndarray, block: int) -> float:
    """Sum over all pairs (i, j) of |a_i - b_j|, in float64."""
    sums = _block_sums(*_blocked(a, block), *_blocked(b, block))
    return float(np.sum(np.asarray(sums, dtype=np.float64)))


def energy_distance(x: Any, y: Any, *, unbiased: bool = True, chunk: int | None = None) -> float:
    """Squared energy distance 2E|X-Y| - E|X-X'| - E|Y-Y'| between two sample sets.

    Parameters
    ----------
    x:
        ``(n, ...)`` samples; trailing axes are flattened to ``d`` features.
    y:
        ``(m, ...)`` samples with the same number of features.
    unbiased:
        True: U-statistics for the within-set terms (mean over i != j), an unbiased estimate
        that is ~0 and may be negative when both sets come from one law. False: V-statistics
        (mean over all i, j), the plug-in estimate, always >= 0.
    chunk:
        Rows per distance block; by default chosen from ``d`` to bound memory.

    Returns
    -------
    float
    """
    x, y = _as_points(x, "x"), _as_points(y, "y")
    (n, d), (m, dy) = x.shape, y.shape
    if d != dy:
        raise ValueError(f"x has {d} features per sample, y has {dy}")
    if min(n, m) < 2:
        raise ValueError(f"need at least 2 samples in each set, got {n} and {m}")
    block = chunk or _block_size(d, max(n, m))
    cross = _mean_distance_sum(x, y, block) / (n * m)
    within_x = _mean_distance_sum(x, x, block) / (n * (n - 1) if unbiased else n * n)
    within_y = _mean_distance_sum(y, y, block) / (m * (m - 1) if unbiased else m * m)
    return 2.0 * cross - within_x - within_y


def noise_floor(heldout: Any, fresh: Any, *, chunk: int | None = None) -> float:
    """The energy distance a perfect model would score: held-out data against a fresh draw.

    Parameters
    ----------
    heldout:
        ``(n, ...)`` held-out data.
    fresh:
        ``(n, ...)`` an independent draw of equal size from the data law.

    Returns
    -------
    float
        The plug-in (V-statistic) energy distance, positive, with expectation
        E|X-X'| (2 / n) under the data law.
    """
    n, m = np.shape(heldout)[0], np.shape(fresh)[0]
    if n != m:
        raise ValueError(f"the fresh draw must match the held-out size ({n}), got {m}")
    return energy_distance(heldout, fresh, unbiased=False, chunk=chunk)


def floor_multiple(samples: Any, heldout: Any, fresh: Any, *, chunk: int | None = None) -> float:
    """Plug-in energy distance of model samples to held-out data, in units of the noise floor.

    Parameters
    ----------
    samples:
        ``(s, ...)`` model samples with s >= n; the first n are used, so that the model is
        measured at the same sample size as the floor.
    heldout:
        ``(n, ...)`` held-out data.
    fresh:
        ``(n, ...)`` an independent draw from the data law.

    Returns
    -------
    float
        About 1 when the model's law equals the data's, larger the worse it is.
    """
    n = np.shape(heldout)[0]
    if np.shape(samples)[0] < n:
        raise ValueError(f"need at least {n} model samples, got {np.shape(samples)[0]}")
    model = energy_distance(np.asarray(samples)[:n], heldout, unbiased=False, chunk=chunk)
    return model / noise_floor(heldout, fresh, chunk=chunk)


def time_call(fn: Callable[..., Any], *args: Any, warmup: bool = False, **kwargs: Any) -> tuple[Any, float]:
    """Call ``fn(*args, **kwargs)`` and measure its wall time until its JAX results are ready.

    Parameters
    ----------
    fn:
        Any callable; its result may be a PyTree of JAX arrays (asynchronously dispatched).
    warmup:
        Call once before timing, so that compilation is not counted.

    Returns
    -------
    result, seconds:
        The result of the timed call and its wall-clock duration.
    """
    if warmup:
        jax.block_until_ready(fn(*args, **kwargs))
    start = time.perf_counter()
    result = jax.block_until_ready(fn(*args, **kwargs))
    return result, time.perf_counter() - start


def loss_spikes(losses: Any, window: int = 50, k: float = 10.0) -> np.ndarray:
    """Steps (1-based) whose training loss jumps far above the run so far: ``(m,)`` ints.

    A step spikes when its loss exceeds the median of the ``window`` steps before it by more than
    ``k`` times their median absolute deviation (and by more than 1e-6 of the median's size), or
    is not finite. Steps with fewer than ``window`` before them are not judged.
    """
    y = np.asarray(losses, dtype=np.float64).reshape(-1)
    if len(y) <= window:
        return np.zeros(0, np.int64)
    past = np.lib.stride_tricks.sliding_window_view(y[:-1], window)  # past[i] precedes y[i + window]
    median = np.median(past, axis=1)
    mad = np.median(np.abs(past - median[:, None]), axis=1)
    now = y[window:]
    spike = ~np.isfinite(now) | (now > median + k * mad + 1e-6 * np.abs(median))
    return np.flatnonzero(spike) + window + 1
