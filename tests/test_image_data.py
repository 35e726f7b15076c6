"""Image-shaped data: 8-bit images dequantised and quantised back exactly, the digits as images
with their labels, and samples.png as grids of images (a row per class)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from gendsl.cli import main
from gendsl.data import builtin, load_source
from gendsl.data.images import dequantise, quantise
from gendsl.errors import GenDataError
from gendsl.plots import IMAGE_COLUMNS, image_layout, image_mosaic, samples_images

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_dequantise_then_quantise_gives_every_level_back():
    rng = np.random.default_rng(0)
    levels = np.tile(np.arange(256, dtype=np.uint8), 400).reshape(100, 4, 16, 16)
    x = dequantise(levels, rng)
    assert x.dtype == np.float32 and x.min() > -1 and x.max() < 1
    assert np.array_equal(quantise(x), levels)
    # the noise is uniform within each level: mean offset 1/2, variance 1/12 (standard errors from n)
    offset = (x.astype(np.float64) + 1) * 128 - levels
    n = offset.size
    assert abs(offset.mean() - 0.5) < 5 * np.sqrt(1 / 12 / n)
    assert abs(offset.var() - 1 / 12) < 5 * np.sqrt(1 / 180 / n)


def test_quantise_clips_samples_outside_the_range():
    assert quantise(np.array([-3.0, 1.0, 7.0, np.nan])).tolist() == [0, 255, 255, 0]


@pytest.mark.parametrize("shape", [(64,), (1, 8, 8), (8, 8)])
def test_digits_come_in_the_shape_the_model_declares(shape):
    data = builtin("digits", 10, seed=0, shape_hint=shape)
    assert data.arrays["x"].shape == (10, *shape)
    with pytest.raises(GenDataError, match=r"real\[64\], real\[1, 8, 8\] or real\[8, 8\].*\(2, 32\)"):
        builtin("digits", 10, shape_hint=(2, 32))


def test_labelled_digits_give_each_image_its_label():
    data = load_source("builtin:digits", ["label", "x"], n_default=300, seed=1, shape_hint=(1, 8, 8))
    labels, images = data.arrays["label"], data.arrays["x"]
    assert labels.shape == (300, 1) and images.shape == (300, 1, 8, 8) and set(np.unique(labels)) <= set(range(10))
    # zeros have an empty centre, ones a full middle column: the labels belong to the images
    centre = images[:, 0, 3:5, 3:5].mean(axis=(1, 2))
    assert centre[labels[:, 0] == 1].mean() > centre[labels[:, 0] == 0].mean() + 0.5


def test_image_layout_and_mosaic_dimensions():
    assert image_layout((3, 5, 7)) == (3, 5, 7) and image_layout((6, 4)) == (1, 6, 4)
    assert image_layout((2, 5, 5)) is None and image_layout((12,)) is None
    mosaic = image_mosaic(np.ones((5, 3, 4, 6)), rows=2, cols=3)
    assert mosaic.shape == (2 * 5 - 1, 3 * 7 - 1, 3)
    assert np.isnan(mosaic[4]).all() and np.isnan(mosaic[5:, 7 * 2:]).all()  # a gap row; the sixth cell blank
    assert np.isfinite(mosaic[:4, :6]).all()


@pytest.mark.parametrize("shape", [(1, 8, 8), (3, 5, 7), (6, 6)])
def test_samples_images_writes_a_picture_with_and_without_classes(tmp_path, shape):
    rng = np.random.default_rng(2)
    samples, reference = rng.uniform(-1, 1, (40, *shape)), rng.uniform(-1, 1, (30, *shape))
    path = samples_images(samples, tmp_path / "a.png", reference=reference, title="t")
    assert path.read_bytes()[:8] == PNG_MAGIC
    classes = rng.integers(0, 3, 40)
    path = samples_images(samples, tmp_path / "b.png", classes=classes)
    assert path.read_bytes()[:8] == PNG_MAGIC and IMAGE_COLUMNS == 8


def test_a_fit_on_8_bit_images_samples_8_bit_images_and_draws_them(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(3)
    images = np.where(rng.random((300, 1, 4, 4)) < 0.5, rng.integers(0, 60, (300, 1, 4, 4)), 200).astype(np.uint8)
    np.save("pixels.npy", images)
    Path("m.gen").write_text("model m {\n  data x: real[1, 4, 4]\n"
                             "  x ~ evolve(flow_matching(), net=mlp(hidden=[16]), sampler=ode(steps=2))\n}\n")
    assert main(["fit", "m.gen", "--data", "pixels.npy", "--steps", "3", "--out", "run"]) == 0
    assert Path("run/samples.png").read_bytes()[:8] == PNG_MAGIC
    assert main(["sample", "run", "--n", "5", "--out", "s.npy"]) == 0
    draws = np.load("s.npy")
    assert draws.dtype == np.uint8 and draws.shape == (5, 1, 4, 4)
