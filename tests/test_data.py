"""Built-in data sets, data loading and the held-out split."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

from gendsl.data import BUILTIN_NAMES, Dataset, builtin, load_source, markov_chain, markov_entropy, split_heldout
from gendsl.errors import GenDataError

POINT_SETS = ["moons", "eight_gaussians", "checkerboard"]


def _markov_log_prob(x: np.ndarray, init: np.ndarray, trans: np.ndarray) -> np.ndarray:
    """(n, N) tokens -> (n,) log p(x) under the chain."""
    lp = np.log(init[x[:, 0]])
    lp = lp + np.sum(np.log(trans[x[:, :-1], x[:, 1:]]), axis=1)
    return lp


# --------------------------------------------------------------------------- built-ins


@pytest.mark.parametrize("name", BUILTIN_NAMES)
def test_builtin_reproducible_under_seed_and_different_across_seeds(name):
    a = builtin(name, 500, seed=3).arrays["x"]
    b = builtin(name, 500, seed=3).arrays["x"]
    c = builtin(name, 500, seed=4).arrays["x"]
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


@pytest.mark.parametrize("name", POINT_SETS)
def test_point_sets_are_2d_float_on_a_standard_scale(name):
    ds = builtin(name, 5000, seed=0)
    x = ds.arrays["x"]
    assert isinstance(ds, Dataset) and ds.name == name and ds.true_nll is None
    assert x.shape == (5000, 2) and x.dtype == np.float32
    assert np.all(np.isfinite(x))
    assert np.all(np.abs(x) < 5.0)
    assert np.all(np.quantile(np.abs(x), 0.99, axis=0) < 4.0)
    assert np.all(x.std(axis=0) > 0.5)  # not collapsed


def test_checkerboard_points_lie_on_dark_squares():
    x = builtin("checkerboard", 4000, seed=1).arrays["x"]
    cells = np.floor(x / 2.0).astype(int)
    assert np.all((cells[:, 0] + cells[:, 1]) % 2 == 0)
    # all eight dark squares are used
    assert len({tuple(c) for c in cells}) == 8


def test_eight_gaussians_has_eight_equal_modes():
    x = builtin("eight_gaussians", 8000, seed=2).arrays["x"]
    angle = np.mod(np.arctan2(x[:, 1], x[:, 0]) + np.pi / 8, 2 * np.pi)
    counts = np.bincount((angle // (np.pi / 4)).astype(int), minlength=8)
    assert counts.shape == (8,) and np.all(np.abs(counts - 1000) < 150)
    np.testing.assert_allclose(np.median(np.linalg.norm(x, axis=1)), 4 / 1.414, atol=0.1)


def test_unknown_builtin_lists_names_and_suggests():
    with pytest.raises(GenDataError) as err:
        builtin("moon", 10)
    msg = str(err.value)
    assert "did you mean 'moons'" in msg
    for name in BUILTIN_NAMES:
        assert name in msg


def test_point_set_rejects_non_2d_shape_hint():
    with pytest.raises(GenDataError, match=r"2-D points.*'x'.*\(3,\)"):
        builtin("moons", 10, shape_hint=(3,))
    assert builtin("moons", 10, shape_hint=(2,)).arrays["x"].shape == (10, 2)


# --------------------------------------------------------------------------- markov


def test_markov_default_and_shape_hint():
    default = builtin("markov", 100, seed=0).arrays["x"]
    assert default.shape == (100, 32) and default.dtype == np.int32
    assert default.min() >= 0 and default.max() <= 7
    hinted = builtin("markov", 100, seed=0, shape_hint=(12, 5)).arrays["x"]
    assert hinted.shape == (100, 12) and hinted.max() <= 4
    with pytest.raises(GenDataError):
        builtin("markov", 10, shape_hint=(12,))
    with pytest.raises(GenDataError):
        builtin("markov", 10, shape_hint=(12, 1))


def test_markov_chain_is_fixed_and_low_entropy():
    init, trans = markov_chain(8)
    init2, trans2 = markov_chain(8)
    np.testing.assert_array_equal(trans, trans2)
    np.testing.assert_array_equal(init, init2)
    np.testing.assert_allclose(trans.sum(axis=1), 1.0)
    np.testing.assert_allclose(init.sum(), 1.0)
    # Dirichlet(0.3) rows: on average well below the uniform entropy log 8
    row_h = -np.sum(trans * np.log(np.where(trans > 0, trans, 1.0)), axis=1)
    assert row_h.mean() < 0.75 * np.log(8)


def test_markov_entropy_equals_enumeration_of_all_sequences():
    init, trans = markov_chain(3)
    length = 5
    seqs = np.array(list(itertools.product(range(3), repeat=length)))
    p = np.exp(_markov_log_prob(seqs, init, trans))
    np.testing.assert_allclose(p.sum(), 1.0, rtol=1e-12)
    exact = -np.sum(p * np.log(p))
    np.testing.assert_allclose(markov_entropy(init, trans, length), exact, rtol=1e-10)


@pytest.mark.parametrize("shape_hint", [None, (10, 5)])
def test_markov_true_nll_matches_monte_carlo(shape_hint):
    ds = builtin("markov", 40_000, seed=7, shape_hint=shape_hint)
    x = ds.arrays["x"]
    init, trans = markov_chain(8 if shape_hint is None else shape_hint[1])
    nll = -_markov_log_prob(x, init, trans)
    se = nll.std(ddof=1) / np.sqrt(len(nll))
    assert ds.true_nll is not None and ds.true_nll > 0
    assert abs(nll.mean() - ds.true_nll) < 4 * se


# --------------------------------------------------------------------------- load_source


def test_load_builtin_keys_by_the_single_variable():
    ds = load_source("builtin:eight_gaussians", ["y"], n_default=50, seed=1)
    assert list(ds.arrays) == ["y"] and ds.arrays["y"].shape == (50, 2)
    np.testing.assert_array_equal(ds.arrays["y"], builtin("eight_gaussians", 50, 1).arrays["x"])
    tok = load_source("builtin:markov", ["s"], n_default=20, shape_hint=(6, 4))
    assert tok.arrays["s"].shape == (20, 6) and tok.true_nll is not None


def test_load_builtin_with_several_variables_names_them():
    with pytest.raises(GenDataError, match=r"'a', 'b'"):
        load_source("builtin:moons", ["a", "b"])
    with pytest.raises(GenDataError, match="did you mean 'checkerboard'"):
        load_source("builtin:checkerbord", ["x"])


def test_npy_round_trip(tmp_path):
    x = np.arange(24, dtype=np.int32).reshape(6, 4)
    np.save(tmp_path / "tokens.npy", x)
    ds = load_source(str(tmp_path / "tokens.npy"), ["seq"])
    np.testing.assert_array_equal(ds.arrays["seq"], x)
    assert ds.arrays["seq"].dtype == np.int32 and ds.true_nll is None


def test_npy_needs_exactly_one_variable(tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((3, 2)))
    with pytest.raises(GenDataError, match=r"'x', 'y'"):
        load_source(str(tmp_path / "x.npy"), ["x", "y"])


def test_npz_round_trip_with_true_nll(tmp_path):
    x = np.random.default_rng(0).normal(size=(10, 3)).astype(np.float32)
    c = np.arange(10)
    np.savez(tmp_path / "d.npz", x=x, c=c, true_nll=np.float64(12.5))
    ds = load_source(str(tmp_path / "d.npz"), ["x", "c"])
    assert set(ds.arrays) == {"x", "c"}
    np.testing.assert_array_equal(ds.arrays["x"], x)
    np.testing.assert_array_equal(ds.arrays["c"], c)
    assert ds.true_nll == 12.5


def test_npz_missing_and_extra_keys_are_named(tmp_path):
    np.savez(tmp_path / "d.npz", x=np.zeros(3), zz=np.zeros(3))
    with pytest.raises(GenDataError) as err:
        load_source(str(tmp_path / "d.npz"), ["x", "y"])
    msg = str(err.value)
    assert "'y'" in msg and "'zz'" in msg and "d.npz" in msg
    with pytest.raises(GenDataError, match="'y'"):
        load_source(str(tmp_path / "d.npz"), ["x", "y", "zz"])


def test_npz_with_pickled_objects_is_refused(tmp_path):
    np.savez(tmp_path / "o.npz", x=np.array([{"a": 1}], dtype=object))
    with pytest.raises(GenDataError, match="o.npz"):
        load_source(str(tmp_path / "o.npz"), ["x"])


def test_json_round_trip_keeps_ints_and_scalars(tmp_path):
    data = {"J": 8, "y": [28, 8, -3, 7, -1, 1, 18, 12], "sigma": [15.0, 10, 16, 11, 9, 11, 10, 18]}
    (tmp_path / "d.json").write_text(json.dumps(data))
    ds = load_source(str(tmp_path / "d.json"), ["J", "y", "sigma"])
    assert ds.arrays["J"].shape == () and ds.arrays["J"].dtype.kind == "i" and int(ds.arrays["J"]) == 8
    assert ds.arrays["y"].dtype.kind == "i"
    np.testing.assert_array_equal(ds.arrays["y"], data["y"])
    assert ds.arrays["sigma"].dtype.kind == "f"
    np.testing.assert_allclose(ds.arrays["sigma"], data["sigma"])


def test_json_bad_contents(tmp_path):
    (tmp_path / "ragged.json").write_text(json.dumps({"x": [[1, 2], [3]]}))
    with pytest.raises(GenDataError, match="'x'"):
        load_source(str(tmp_path / "ragged.json"), ["x"])
    (tmp_path / "text.json").write_text(json.dumps({"x": ["a", "b"]}))
    with pytest.raises(GenDataError, match="'x'"):
        load_source(str(tmp_path / "text.json"), ["x"])
    (tmp_path / "list.json").write_text("[1, 2]")
    with pytest.raises(GenDataError, match="JSON object"):
        load_source(str(tmp_path / "list.json"), ["x"])
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(GenDataError, match="broken.json"):
        load_source(str(tmp_path / "broken.json"), ["x"])
    (tmp_path / "extra.json").write_text(json.dumps({"mu": 1.0, "sigmaa": 2.0}))
    with pytest.raises(GenDataError, match="'sigmaa'.*did you mean 'sigma'"):
        load_source(str(tmp_path / "extra.json"), ["mu", "sigma"])


def test_missing_file_and_unknown_suffix(tmp_path):
    missing = tmp_path / "nope.npz"
    with pytest.raises(GenDataError, match="nope.npz"):
        load_source(str(missing), ["x"])
    (tmp_path / "d.csv").write_text("1,2\n")
    with pytest.raises(GenDataError, match=r"builtin:NAME.*\.npy"):
        load_source(str(tmp_path / "d.csv"), ["x"])


# --------------------------------------------------------------------------- split


def test_split_heldout_shares_one_permutation_and_copies_scalars():
    n = 200
    x = np.arange(n * 2, dtype=float).reshape(n, 2)
    y = np.arange(n) * 10
    train, held = split_heldout({"x": x, "y": y, "J": np.asarray(8)}, fraction=0.1, seed=5)
    assert held["x"].shape == (20, 2) and train["x"].shape == (180, 2)
    for part in (train, held):
        np.testing.assert_array_equal(part["x"][:, 0] / 2 * 10, part["y"])  # rows stay paired
        assert int(part["J"]) == 8
    rows = np.concatenate([train["y"], held["y"]])
    np.testing.assert_array_equal(np.sort(rows), y)  # disjoint, and nothing lost
    again = split_heldout({"x": x, "y": y}, fraction=0.1, seed=5)[1]["y"]
    other = split_heldout({"x": x, "y": y}, fraction=0.1, seed=6)[1]["y"]
    np.testing.assert_array_equal(again, held["y"])
    assert not np.array_equal(other, held["y"])


def test_split_heldout_errors():
    with pytest.raises(GenDataError, match="'x': 5.*'y': 4"):
        split_heldout({"x": np.zeros(5), "y": np.zeros(4)})
    with pytest.raises(GenDataError):
        split_heldout({"x": np.zeros(1)})
    train, held = split_heldout({"x": np.arange(3)}, fraction=0.01)
    assert len(held["x"]) == 1 and len(train["x"]) == 2


def test_json_true_nll_and_bad_true_nll(tmp_path):
    (tmp_path / "t.json").write_text(json.dumps({"x": [[0, 1], [1, 0]], "true_nll": 1.25}))
    ds = load_source(str(tmp_path / "t.json"), ["x"])
    assert ds.true_nll == 1.25 and list(ds.arrays) == ["x"]
    np.savez(tmp_path / "bad.npz", x=np.zeros(3), true_nll=np.zeros(2))
    with pytest.raises(GenDataError, match="true_nll"):
        load_source(str(tmp_path / "bad.npz"), ["x"])


def test_labelled_blobs_put_each_label_in_its_quadrant():
    from gendsl.data import LABELLED_CENTRES, load_source

    ds = load_source("builtin:labelled_blobs", ["label", "x"], n_default=4000, seed=1)
    label, x = ds.arrays["label"][:, 0], ds.arrays["x"]
    assert ds.arrays["label"].shape == (4000, 1) and x.shape == (4000, 2)
    assert set(np.unique(label)) == {0, 1, 2, 3}
    same_quadrant = np.sign(x) == np.sign(LABELLED_CENTRES[label])
    assert same_quadrant.all(axis=1).mean() > 0.99
