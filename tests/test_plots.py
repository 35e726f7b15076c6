"""Pictures are written, atomically, as non-empty PNG files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from gendsl.plots import grid_2d, loss_curve, samples_2d, trace_plot

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _assert_png(path: Path, folder: Path) -> None:
    data = Path(path).read_bytes()
    assert data[:8] == PNG_MAGIC and len(data) > 2000
    assert [p.name for p in folder.iterdir() if p.name.endswith(".tmp")] == []  # no leftovers


def test_loss_curve_log_and_linear(tmp_path):
    steps = np.arange(1, 501)
    positive = 5.0 / np.sqrt(steps) + 0.05 * np.random.default_rng(0).random(500)
    out = loss_curve(positive, tmp_path / "loss.png", title="positive")
    assert out == tmp_path / "loss.png"
    _assert_png(out, tmp_path)
    signed = -np.log(steps)
    signed[10] = np.nan
    _assert_png(loss_curve(signed, tmp_path / "signed.png"), tmp_path)


def test_loss_curve_overwrites_existing_file(tmp_path):
    target = tmp_path / "loss.png"
    target.write_bytes(b"old")
    loss_curve(np.ones(3), target)
    _assert_png(target, tmp_path)


@pytest.mark.parametrize("n", [500, 20_000])  # scatter and 2-D histogram
def test_samples_2d_alone_and_beside_reference(tmp_path, n):
    rng = np.random.default_rng(1)
    samples = rng.normal(size=(n, 2))
    _assert_png(samples_2d(samples, tmp_path / "s.png"), tmp_path)
    ref = rng.normal(size=(n, 2)) + 1.0
    out = samples_2d(samples, tmp_path / "sub" / "sr.png", reference=ref, title="t")
    _assert_png(out, tmp_path / "sub")


def test_samples_2d_rejects_other_shapes(tmp_path):
    with pytest.raises(ValueError, match=r"\(n, 2\)"):
        samples_2d(np.zeros((10, 3)), tmp_path / "bad.png")
    assert not (tmp_path / "bad.png").exists()


def test_trace_plot_rows_and_cap(tmp_path):
    rng = np.random.default_rng(2)
    draws = {"mu": rng.normal(size=(4, 200)), "theta": rng.normal(size=(4, 200, 8)), "tau": rng.gamma(2.0, size=(4, 200))}
    small = trace_plot({"mu": draws["mu"]}, tmp_path / "one.png")
    _assert_png(small, tmp_path)
    capped = trace_plot(draws, tmp_path / "capped.png", max_rows=5)
    full = trace_plot(draws, tmp_path / "full.png", max_rows=20)
    _assert_png(capped, tmp_path)
    # ten rows draw a taller picture than five
    assert full.stat().st_size > capped.stat().st_size
    with pytest.raises(ValueError, match="chains, draws"):
        trace_plot({"mu": np.zeros(10)}, tmp_path / "bad.png")


def test_grid_2d_with_a_missing_cell(tmp_path):
    rng = np.random.default_rng(3)
    panels = {
        ("evolve", "moons"): rng.normal(size=(400, 2)),
        ("evolve", "checkerboard"): rng.uniform(-4, 4, size=(5000, 2)),
        ("pushforward", "moons"): rng.normal(size=(400, 2)) * 2,
    }
    _assert_png(grid_2d(panels, tmp_path / "grid.png", title="benchmark"), tmp_path)
    with pytest.raises(ValueError):
        grid_2d({}, tmp_path / "empty.png")
