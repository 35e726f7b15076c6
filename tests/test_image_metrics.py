"""Image metrics: the classifier scores real images as real and damaged ones as damaged, the
feature distance of real images sits at its noise floor, KID is unbiased, copies are caught, and
a fit on images writes them into metrics.json."""

import json
from pathlib import Path

import jax
import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from gendsl.cli import main
from gendsl.data.sets import _digits_file
from gendsl.image_metrics import (
    classifier_agreement,
    image_metrics,
    kernel_distance,
    kid,
    nearest_neighbours,
    train_classifier,
)


@pytest.fixture(scope="module")
def digits():
    """The 1 797 digit images as ``(n, 1, 8, 8)`` in [-1, 1], cut into train / held-out / samples
    stand-ins (real images no model has seen) by a seeded permutation."""
    images, labels = _digits_file()
    x = (images.reshape(-1, 1, 8, 8) / 8.0 - 1.0).astype(np.float32)
    order = np.random.default_rng(5).permutation(len(x))
    parts = order[:1300], order[1300:1550], order[1550:]
    return [(x[p], labels[p]) for p in parts]


@pytest.fixture(scope="module")
def classifier(digits):
    (train_x, train_y), (test_x, test_y), _ = digits
    return train_classifier(train_x, train_y, test_x, test_y, jax.random.key(0), classes=10)


def test_the_classifier_learns_the_digits_and_agrees_with_real_labels(classifier, digits):
    _, _, (real_x, real_y) = digits
    assert classifier.heldout_accuracy > 0.9
    agreement = classifier_agreement(classifier, real_x, real_y)
    # real images agree as often as the held-out ones are classified right (binomial error, n=247)
    se = np.sqrt(classifier.heldout_accuracy * (1 - classifier.heldout_accuracy) / len(real_y))
    assert abs(agreement - classifier.heldout_accuracy) < 4 * np.sqrt(2) * se + 0.01
    shuffled = classifier_agreement(classifier, real_x, np.roll(real_y, 1))
    assert shuffled < 0.3  # labels that do not belong to the images


def test_real_images_sit_at_the_feature_noise_floor_and_damaged_ones_far_above(classifier, digits):
    (train_x, _), (test_x, _), (real_x, _) = digits
    target = classifier.features(test_x)
    floor = kernel_distance(classifier.features(train_x[:len(real_x)]), target)
    real = kernel_distance(classifier.features(real_x), target)
    blurred = kernel_distance(classifier.features(gaussian_filter(real_x, sigma=(0, 0, 1, 1))), target)
    noise = np.random.default_rng(0).uniform(-1, 1, real_x.shape).astype(np.float32)
    assert 0.5 < real / floor < 2.0
    assert blurred / floor > 4.0 and kernel_distance(classifier.features(noise), target) / floor > 10.0


def test_kid_is_unbiased_and_the_v_statistic_is_positive():
    rng = np.random.default_rng(1)
    same = np.array([kid(rng.normal(size=(60, 4)), rng.normal(size=(60, 4))) for _ in range(200)])
    assert abs(same.mean()) < 4 * same.std(ddof=1) / np.sqrt(len(same))
    v_stats = [kernel_distance(rng.normal(size=(60, 4)), rng.normal(size=(60, 4))) for _ in range(20)]
    assert min(v_stats) > 0
    shifted = np.array([kid(rng.normal(size=(60, 4)) + 1.0, rng.normal(size=(60, 4))) for _ in range(20)])
    assert shifted.mean() > 10 * same.std(ddof=1)


def test_copies_of_training_images_are_caught_and_new_images_are_not(digits):
    (train_x, _), (test_x, _), (real_x, _) = digits
    copied = nearest_neighbours(train_x[:100], train_x, test_x)
    assert copied["copies_share"] == 1.0 and copied["memorisation_ratio"] == 0.0
    fresh = nearest_neighbours(real_x, train_x, test_x)
    # new images are near copies as often as held-out ones (two binomial shares, n=247 and 250)
    p = max(fresh["heldout_copies_share"], 1 / len(test_x))
    assert abs(fresh["copies_share"] - fresh["heldout_copies_share"]) < 4 * np.sqrt(2 * p * (1 - p) / len(real_x))
    assert 0.8 < fresh["memorisation_ratio"] < 1.25


def test_image_metrics_without_labels_use_pixels(digits):
    (train_x, _), (test_x, _), (real_x, _) = digits
    out = image_metrics(real_x, train_x, test_x, jax.random.key(1))
    assert out["feature_space"] == "pixels" and "classifier_agreement" not in out
    assert 0.5 < out["feature_distance_over_floor"] < 2.0
    assert out["n_floor_reference"] == len(test_x) and out["n_train"] == len(train_x)


def test_a_fit_on_labelled_images_reports_agreement_and_feature_distance(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("m.gen").write_text("model m {\n  data label: token[1] of 10\n  data x: real[1, 8, 8]\n"
                             "  label ~ factorize(mlp(hidden=[8]))\n"
                             "  x ~ evolve(flow_matching(), net=mlp(hidden=[16]), sampler=ode(steps=2), given=label)\n}\n")
    assert main(["fit", "m.gen", "--data", "builtin:digits", "--n", "600", "--steps", "3", "--out", "run"]) == 0
    images = json.loads(Path("run/metrics.json").read_text())["images"]
    assert images["feature_space"] == "classifier" and 0.0 <= images["classifier_agreement"] <= 1.0
    assert images["classifier_heldout_accuracy"] > 0.5
    # three training steps give the pixels' means and spreads with no digit in them: far above the floor
    assert images["feature_distance_over_floor"] > 1.5
