"""Pictures: training loss, 2-D samples, image samples, MCMC traces, and a benchmark grid.

Figures are built on matplotlib's Agg canvas (no pyplot state, never a window) and written
atomically inside their folder (:func:`gendsl.numerics.confined.atomic_write_bytes`), so a reader
never sees a half-written file and no link is written through. Each function returns the path.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from gendsl.numerics.confined import atomic_write_bytes, output_root

__all__ = ["loss_curve", "samples_2d", "image_layout", "image_mosaic", "samples_images", "trace_plot", "grid_2d"]

_SCATTER_MAX = 3000  # above this many points, a 2-D histogram shows density better
_BINS = 100


def _save(fig: Figure, path: str | os.PathLike) -> Path:
    """Write ``fig`` to ``path`` atomically (format from the suffix, PNG by default)."""
    path = Path(path)
    fmt = path.suffix.lstrip(".").lower() or "png"
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format=fmt, dpi=110, bbox_inches="tight")
    atomic_write_bytes(output_root(path.parent, "the folder of the picture") / path.name, buf.getvalue())
    return path


def _points(samples: Any, name: str = "samples") -> np.ndarray:
    arr = np.asarray(samples, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise ValueError(f"{name} must have shape (n, 2), got {arr.shape}")
    return arr


def _limits(arrays: Sequence[np.ndarray]) -> tuple[tuple[float, float], tuple[float, float]]:
    """Axis limits covering the 0.5-99.5 percentiles of all finite points, with a margin."""
    finite = [a[np.all(np.isfinite(a), axis=1)] for a in arrays]
    pts = np.concatenate(finite) if finite else np.zeros((0, 2))
    if len(pts) == 0:
        return (-1.0, 1.0), (-1.0, 1.0)
    lo, hi = np.percentile(pts, 0.5, axis=0), np.percentile(pts, 99.5, axis=0)
    pad = 0.1 * np.maximum(hi - lo, 1e-6)
    lo, hi = lo - pad, hi + pad
    return (float(lo[0]), float(hi[0])), (float(lo[1]), float(hi[1]))


def _draw_points(ax: Any, pts: np.ndarray, lims: tuple[tuple[float, float], tuple[float, float]]) -> None:
    """Scatter for few points, a 2-D histogram for many, on fixed limits."""
    pts = pts[np.all(np.isfinite(pts), axis=1)]
    if len(pts) <= _SCATTER_MAX:
        ax.scatter(pts[:, 0], pts[:, 1], s=3, alpha=0.5, linewidths=0)
    else:
        ax.hist2d(pts[:, 0], pts[:, 1], bins=_BINS, range=lims, cmap="Blues")
    ax.set_xlim(lims[0])
    ax.set_ylim(lims[1])
    ax.set_aspect("equal", adjustable="box")
    ax.set_xticks([])
    ax.set_yticks([])


def _smooth(y: np.ndarray) -> np.ndarray:
    """Centred moving average over about 2% of the curve, ignoring non-finite values."""
    window = max(1, len(y) // 50)
    ok = np.isfinite(y)
    kernel = np.ones(window)
    total = np.convolve(np.where(ok, y, 0.0), kernel, mode="same")
    count = np.convolve(ok.astype(float), kernel, mode="same")
    with np.errstate(invalid="ignore", divide="ignore"):
        return total / count


def loss_curve(losses: Any, path: str | os.PathLike, title: str | None = None,
               validation: tuple[Any, Any] | None = None, best_step: int | None = None) -> Path:
    """Training loss per step: the raw values faint, a moving average over them; with
    ``validation = (steps, losses)`` the held-out curve beside it and the best step marked.

    Parameters
    ----------
    losses:
        ``(steps,)`` loss values; non-finite ones leave gaps.
    path:
        Output image file.
    title:
        Figure title.
    validation, best_step:
        ``(steps, losses)`` of the held-out evaluations, and the step whose parameters were kept.

    Returns
    -------
    Path
        ``path``. The y axis is logarithmic when every finite loss is positive.
    """
    y = np.asarray(losses, dtype=np.float64).reshape(-1)
    steps = np.arange(1, len(y) + 1)
    fig = Figure(figsize=(6, 3.5))
    ax = fig.add_subplot()
    ax.plot(steps, y, lw=0.6, alpha=0.35, color="tab:blue", label="training loss")
    ax.plot(steps, _smooth(y), lw=1.5, color="tab:blue", label="moving average")
    finite = y[np.isfinite(y)]
    if validation is not None and len(validation[0]):
        v_steps, v_losses = (np.asarray(a, dtype=np.float64) for a in validation)
        ax.plot(v_steps, v_losses, lw=1.5, marker=".", color="tab:orange", label="validation loss")
        finite = np.concatenate([finite, v_losses[np.isfinite(v_losses)]])
        if best_step:
            ax.axvline(best_step, color="tab:orange", lw=0.8, ls="--", label=f"kept: step {best_step}")
    if len(finite) and np.all(finite > 0):
        ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.legend(loc="upper right", frameon=False)
    if title:
        ax.set_title(title)
    return _save(fig, path)


def samples_2d(
    samples: Any, path: str | os.PathLike, reference: Any = None, title: str | None = None
) -> Path:
    """2-D samples, beside the reference data when given, on shared axes.

    Parameters
    ----------
    samples:
        ``(n, 2)`` model samples.
    path:
        Output image file.
    reference:
        ``(m, 2)`` data to show in a left panel, or None.
    title:
        Figure title.

    Returns
    -------
    Path
    """
    panels = [("samples", _points(samples))]
    if reference is not None:
        panels.insert(0, ("data", _points(reference, "reference")))
    lims = _limits([p for _, p in panels])
    fig = Figure(figsize=(3.5 * len(panels), 3.2), layout="constrained")
    for i, (label, pts) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), i + 1)
        _draw_points(ax, pts, lims)
        ax.set_title(f"{label} (n={len(pts)})")
    if title:
        fig.suptitle(title)
    return _save(fig, path)


#: images in a row of :func:`samples_images`, and rows without classes
IMAGE_COLUMNS, IMAGE_ROWS = 8, 8


def image_layout(shape: Sequence[int]) -> tuple[int, int, int] | None:
    """``(C, H, W)`` of an event shape a picture can show: ``(C, H, W)`` with C 1 or 3 (channels
    first) or ``(H, W)``; None otherwise."""
    shape = tuple(int(d) for d in shape)
    if len(shape) == 3 and shape[0] in (1, 3):
        return shape
    if len(shape) == 2:
        return (1, *shape)
    return None


def image_mosaic(images: Any, rows: int, cols: int) -> np.ndarray:
    """Tile ``(n, C, H, W)`` images row by row into ``(rows (H + 1) - 1, cols (W + 1) - 1, C)``
    with one-pixel gaps (NaN: drawn blank); missing cells stay blank."""
    images = np.asarray(images, dtype=np.float64)
    _, c, h, w = images.shape
    out = np.full((rows * (h + 1) - 1, cols * (w + 1) - 1, c), np.nan)
    for k, img in enumerate(images[: rows * cols]):
        r, q = divmod(k, cols)
        out[r * (h + 1): r * (h + 1) + h, q * (w + 1): q * (w + 1) + w] = np.moveaxis(img, 0, -1)
    return out


def _by_class(images: np.ndarray, classes: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Up to :data:`IMAGE_COLUMNS` images of each class, a row each (blank cells pad short rows)."""
    names = np.unique(classes)
    rows = []
    for k in names:
        picked = images[classes == k][:IMAGE_COLUMNS]
        pad = np.full((IMAGE_COLUMNS - len(picked), *images.shape[1:]), np.nan)
        rows.append(np.concatenate([picked, pad]))
    return np.concatenate(rows), [str(k) for k in names]


def _show(ax: Any, mosaic: np.ndarray, lo: float, hi: float) -> None:
    if mosaic.shape[-1] == 1:
        ax.imshow(np.ma.masked_invalid(mosaic[..., 0]), cmap="gray", vmin=lo, vmax=hi, interpolation="nearest")
    else:
        rgb = np.clip((mosaic - lo) / max(hi - lo, 1e-12), 0.0, 1.0)
        ax.imshow(np.where(np.isnan(rgb), 1.0, rgb), interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])


def samples_images(samples: Any, path: str | os.PathLike, reference: Any = None, classes: Any = None,
                   title: str | None = None) -> Path:
    """A grid of sampled images beside a grid of real ones, on the real images' value range.

    Parameters
    ----------
    samples:
        ``(n, C, H, W)`` (C 1 or 3, channels first) or ``(n, H, W)`` model samples.
    path:
        Output image file.
    reference:
        Real images of the same shape (held-out data) for a left panel, or None.
    classes:
        ``(n,)`` class of each sample, or None: with classes the samples are shown a row per class
        (up to :data:`IMAGE_COLUMNS` each), labelled; without, :data:`IMAGE_ROWS` rows.
    title:
        Figure title.

    Returns
    -------
    Path
    """
    samples = np.asarray(samples, dtype=np.float64)
    layout = image_layout(samples.shape[1:])
    if layout is None:
        raise ValueError(f"samples must have shape (n, C, H, W) with C 1 or 3, or (n, H, W); got {samples.shape}")
    samples = samples.reshape(-1, *layout)
    row_names = None
    if classes is not None:
        samples, row_names = _by_class(samples, np.asarray(classes).reshape(len(samples)))
    panels = [("samples", samples, len(samples) // IMAGE_COLUMNS if row_names else IMAGE_ROWS)]
    if reference is not None:
        panels.insert(0, ("held-out data", np.asarray(reference, dtype=np.float64).reshape(-1, *layout), IMAGE_ROWS))
    real = panels[0][1]
    lo, hi = float(np.nanmin(real)), float(np.nanmax(real))
    fig = Figure(figsize=(3.2 * len(panels), 3.2 * max(p[2] for p in panels) / IMAGE_COLUMNS + 0.5), layout="constrained")
    for i, (label, images, rows) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), i + 1)
        _show(ax, image_mosaic(images, rows, IMAGE_COLUMNS), lo, hi)
        ax.set_title(label)
        if label == "samples" and row_names:
            h = layout[1] + 1
            ax.set_yticks([r * h + (h - 1) / 2 for r in range(len(row_names))], row_names)
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def _scalar_series(draws: Mapping[str, Any], max_rows: int) -> tuple[list[tuple[str, np.ndarray]], int]:
    """Split each ``(chains, draws, ...)`` array into ``(chains, draws)`` series, one per scalar."""
    series = []
    total = 0
    for name, value in draws.items():
        arr = np.asarray(value, dtype=np.float64)
        if arr.ndim < 2:
            raise ValueError(f"draws['{name}'] must have shape (chains, draws, ...), got {arr.shape}")
        event = arr.shape[2:]
        flat = arr.reshape(arr.shape[0], arr.shape[1], -1)
        for k in range(flat.shape[2]):
            total += 1
            if len(series) < max_rows:
                index = np.unravel_index(k, event) if event else ()
                label = f"{name}[{','.join(map(str, index))}]" if event else name
                series.append((label, flat[:, :, k]))
    return series, total


def trace_plot(draws: Mapping[str, Any], path: str | os.PathLike, max_rows: int = 12) -> Path:
    """MCMC traces: one row per scalar parameter, trace per chain on the left, histogram right.

    Parameters
    ----------
    draws:
        Name -> ``(chains, draws, ...)`` array; vector parameters give one row per element.
    path:
        Output image file.
    max_rows:
        At most this many rows, in the order of ``draws``; the title says how many were left out.

    Returns
    -------
    Path
    """
    series, total = _scalar_series(draws, max_rows)
    if not series:
        raise ValueError("no draws to plot")
    rows = len(series)
    fig = Figure(figsize=(9, 1.6 * rows + 0.6))
    for r, (label, chains) in enumerate(series):
        ax_trace = fig.add_subplot(rows, 2, 2 * r + 1)
        ax_hist = fig.add_subplot(rows, 2, 2 * r + 2)
        for c in range(chains.shape[0]):
            ax_trace.plot(chains[c], lw=0.5, alpha=0.8)
            ax_hist.hist(chains[c][np.isfinite(chains[c])], bins=40, histtype="step", density=True)
        ax_trace.set_ylabel(label)
        ax_hist.set_yticks([])
    if total > rows:
        fig.suptitle(f"first {rows} of {total} scalar parameters")
    fig.tight_layout()
    return _save(fig, path)


def grid_2d(
    panels: Mapping[tuple[str, str], Any], path: str | os.PathLike, title: str | None = None
) -> Path:
    """A grid of 2-D sample panels, e.g. rows = mechanisms, columns = data sets.

    Parameters
    ----------
    panels:
        ``(row, col)`` label -> ``(n, 2)`` samples; row and column order follow first
        appearance; missing cells stay empty. Each column shares axis limits.
    path:
        Output image file.
    title:
        Figure title.

    Returns
    -------
    Path
    """
    if not panels:
        raise ValueError("no panels to plot")
    pts = {key: _points(v, f"panel {key}") for key, v in panels.items()}
    rows = list(dict.fromkeys(r for r, _ in pts))
    cols = list(dict.fromkeys(c for _, c in pts))
    lims = {c: _limits([v for (_, cc), v in pts.items() if cc == c]) for c in cols}
    fig = Figure(figsize=(2.6 * len(cols), 2.6 * len(rows) + 0.4), layout="constrained")
    for i, r in enumerate(rows):
        for j, c in enumerate(cols):
            ax = fig.add_subplot(len(rows), len(cols), i * len(cols) + j + 1)
            if (r, c) in pts:
                _draw_points(ax, pts[(r, c)], lims[c])
            else:
                ax.set_xticks([])
                ax.set_yticks([])
                ax.text(0.5, 0.5, "n/a", ha="center", va="center", transform=ax.transAxes)
            if i == 0:
                ax.set_title(str(c))
            if j == 0:
                ax.set_ylabel(str(r))
    if title:
        fig.suptitle(title)
    return _save(fig, path)
