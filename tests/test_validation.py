"""Training a user can trust: validation during fit, early stopping that keeps the best
parameters, honest held-out figures, and built-in digits whose held-out images are unseen."""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest

import gendsl
from gendsl.cli import main
from gendsl.data import builtin, split_heldout
from gendsl.fit_metrics import heldout_nll_stats, summary_line
from gendsl.metrics import loss_spikes

FLOW = "model m {\n  data x: real[3]\n  x ~ pushforward(normal(0, 1), coupling(layers=4, hidden=[32, 32]))\n}\n"


def _small(seed: int, n: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, 3))
    return (z @ np.array([[1.0, 0.5, 0.0], [0.0, 1.0, 0.3], [0.0, 0.0, 0.5]]) + np.sin(z[:, :1])).astype(np.float32)


def test_the_returned_parameters_are_those_of_the_best_validation_loss():
    prog = gendsl.compile(gendsl.parse(FLOW))
    val = {"x": _small(1, 200)}
    fit = prog.fit({"x": _small(0, 60)}, steps=600, key=jax.random.key(0), batch_size=30, progress=False,
                   validation=val, eval_every=20)
    curve = fit.validation
    assert len(curve.steps) == 600 // 20 and list(curve.steps) == list(range(20, 601, 20))
    best = int(np.nanargmin(curve.losses))
    assert curve.best_step == curve.steps[best]
    nll = -float(np.mean(prog.log_prob(fit.params, val)))  # the NLL of the kept parameters on the same data
    np.testing.assert_allclose(nll, curve.losses[best], rtol=1e-5)
    # 60 examples, 600 steps: the flow overfits, so the kept parameters beat the last ones
    last = -float(np.mean(prog.log_prob(prog.finalize(fit.state.params, fit.state.node_state), val)))
    assert curve.best_step < 600 and nll < last


def test_patience_stops_training_after_that_many_evaluations_without_a_better_one():
    prog = gendsl.compile(gendsl.parse(FLOW))
    fit = prog.fit({"x": _small(0, 60)}, steps=5000, key=jax.random.key(0), batch_size=30, progress=False,
                   validation={"x": _small(1, 200)}, eval_every=20, patience=3)
    curve = fit.validation
    assert curve.stopped_early and len(fit.losses) == curve.steps[-1] < 5000
    after = curve.losses[list(curve.steps).index(curve.best_step) + 1:]
    assert len(after) == 3 and np.all(after >= np.nanmin(curve.losses))


def test_a_share_of_the_data_is_held_out_and_bad_shares_are_refused():
    prog = gendsl.compile(gendsl.parse(FLOW))
    fit = prog.fit({"x": _small(0, 100)}, steps=40, key=jax.random.key(0), batch_size=1000, progress=False,
                   validation=0.2, eval_every=10)
    assert fit.validation is not None and len(fit.validation.losses) == 4
    for bad in (0.0, 1.0, -0.1, "x", True):
        with pytest.raises(gendsl.GenDataError, match="validation"):
            prog.fit({"x": _small(0, 100)}, steps=10, progress=False, validation=bad)
    with pytest.raises(gendsl.GenDataError, match="no example"):
        prog.fit({"x": _small(0, 3)}, steps=10, progress=False, validation=0.1)


def test_heldout_statistics_count_what_the_mean_hides():
    lp = np.concatenate([np.random.default_rng(0).normal(-2.0, 0.5, size=999), [-1e9]])
    stats = heldout_nll_stats(lp)
    assert stats["heldout_nll_extreme"] == 1 and stats["heldout_nll_nonfinite"] == 0
    assert stats["heldout_nll"] > 1e5 and abs(stats["heldout_nll_median"] - 2.0) < 0.1
    np.testing.assert_allclose(stats["heldout_nll_se"], np.std(-lp, ddof=1) / np.sqrt(1000))
    stats = heldout_nll_stats(np.array([-1.0, -2.0, -np.inf]))
    assert stats["heldout_nll_nonfinite"] == 1 and stats["heldout_nll"] == np.inf
    line = summary_line({**heldout_nll_stats(lp), "steps": 10, "train_seconds": 1.0})
    assert "1 extreme of 1000" in line and "10 steps in 1.0 s" in line


def test_digits_hold_out_whole_images():
    data = builtin("digits", 3000, seed=0)
    train, held = split_heldout(data.arrays, 0.1, seed=0, groups=data.groups)
    held_rows = {r.tobytes() for r in np.round((held["x"] + 1) / 2 * 17 - 0.5)}  # back to the integer pixels
    train_rows = {r.tobytes() for r in np.round((train["x"] + 1) / 2 * 17 - 0.5)}
    assert held_rows and not held_rows & train_rows
    a = builtin("digits", 2000, seed=1, part="train").groups
    b = builtin("digits", 2000, seed=2, part="heldout").groups
    assert not set(a) & set(b) and len(set(b)) <= 180


def test_gendsl_fit_reports_the_spread_of_the_heldout_nll_and_the_validation_curve(tmp_path, capsys):
    (tmp_path / "m.gen").write_text(FLOW.replace("real[3]", "real[2]"))
    assert main(["fit", str(tmp_path / "m.gen"), "--data", "builtin:moons", "--n", "2000", "--steps", "200",
                 "--out", str(tmp_path / "run"), "--quiet", "--eval-every", "20"]) == 0
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    for key in ("heldout_nll", "heldout_nll_se", "heldout_nll_median", "heldout_nll_nonfinite", "heldout_nll_extreme",
                "best_step", "stopped_early"):
        assert key in metrics, key
    assert metrics["heldout_n"] == 200 and 0 < metrics["heldout_nll_se"] < 0.2
    out = capsys.readouterr().out
    assert "held-out NLL" in out and "noise floor" in out and (tmp_path / "run" / "loss.png").stat().st_size > 0


def test_a_loss_spike_is_found_and_reported():
    rng = np.random.default_rng(0)
    losses = 3.0 * np.exp(-np.arange(600) / 200) + 0.01 * rng.normal(size=600)
    assert len(loss_spikes(losses)) == 0
    losses[[140, 400]] = [50.0, np.nan]
    np.testing.assert_array_equal(loss_spikes(losses), [141, 401])
    line = summary_line({"steps": 600, "train_seconds": 1.0, "loss_spikes": 2, "loss_spike_steps": [141, 401]})
    assert "2 loss spike(s), the first at step 141" in line
