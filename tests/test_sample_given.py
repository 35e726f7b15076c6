"""Conditioning at sample time and parameters by name (issue 15): ``sample(..., given=)``,
``gendsl sample --given``, a conditional model reusing a joint run's parameters, and parameter
files that refuse the wrong model even when the shapes agree."""

from __future__ import annotations

import contextlib
import io
import json

import jax
import numpy as np
import pytest

import gendsl
from gendsl.cli import main
from gendsl.data import builtin
from gendsl.errors import GenDataError

FLOW = "pushforward(normal(0, 1), coupling(layers=4, hidden=[32, 32]), given=label)"
JOINT = f"""model joint {{
  data label: token[1] of 4
  data x: real[2]
  label ~ factorize(mlp(hidden=[16]))
  x ~ {FLOW}
}}
"""
CONDITIONAL = f"""model conditional {{
  data label: token[1] of 4
  data x: real[2]
  x ~ {FLOW}
}}
"""


@pytest.fixture(scope="module")
def blobs():
    return builtin("labelled_blobs", 2000, seed=0).arrays


@pytest.fixture(scope="module")
def joint_fit(blobs, tmp_path_factory):
    prog = gendsl.compile(gendsl.parse(JOINT))
    fit = prog.fit(blobs, steps=400, batch_size=256, key=jax.random.key(0), progress=False)
    folder = prog.save(fit.params, tmp_path_factory.mktemp("joint") / "params")
    return prog, fit.params, folder


def centres(blobs) -> np.ndarray:
    return np.stack([blobs["x"][blobs["label"][:, 0] == c].mean(0) for c in range(4)])


@pytest.mark.parametrize("label", range(4))
def test_given_label_draws_that_class(blobs, joint_fit, label):
    """Clamped to one class, the label draws are that class and the points sit at its blob: the
    blobs are 4 sd apart, so all but a few of 500 points are nearest their own class centre."""
    prog, params, _ = joint_fit
    draws = prog.sample(params, jax.random.key(1), 500, given={"label": label})
    assert np.all(np.asarray(draws["label"]) == label)
    nearest = np.argmin(((np.asarray(draws["x"])[:, None, :] - centres(blobs)[None]) ** 2).sum(-1), axis=1)
    assert np.mean(nearest == label) > 0.95


def test_given_per_draw_values_and_bad_names(joint_fit):
    prog, params, _ = joint_fit
    labels = np.arange(8).reshape(8, 1) % 4
    draws = prog.sample(params, jax.random.key(2), 8, given={"label": labels})
    np.testing.assert_array_equal(draws["label"], labels)
    with pytest.raises(GenDataError, match="'y', which is not a modelled variable"):
        prog.sample(params, jax.random.key(2), 8, given={"y": 1})
    with pytest.raises(GenDataError, match="tokens in 0..3"):
        prog.sample(params, jax.random.key(2), 8, given={"label": 7})
    with pytest.raises(GenDataError, match="hold 3 examples but 8 draws"):
        prog.sample(params, jax.random.key(2), 8, given={"label": [[0], [1], [2]]})


def test_a_conditional_model_reuses_the_joint_parameters_by_name(blobs, joint_fit):
    """The conditional model loads the joint run's ``x`` and ignores its ``label``: its
    log-density of x given the label is the joint one less log p(label), a constant per class."""
    joint, params, folder = joint_fit
    conditional = gendsl.compile(gendsl.parse(CONDITIONAL))
    loaded = conditional.load_params(folder)
    assert set(loaded) == {"x"}
    data = {k: v[:400] for k, v in blobs.items()}
    difference = np.asarray(joint.log_prob(params, data)) - np.asarray(conditional.log_prob(loaded, data))
    for c in range(4):
        group = difference[data["label"][:, 0] == c]
        assert np.ptp(group) < 1e-4
    assert np.all(difference < 0)  # log p(label) of a 4-class label


def test_parameters_of_another_model_are_refused_even_with_equal_shapes(joint_fit):
    _, _, folder = joint_fit
    other = gendsl.compile(gendsl.parse(CONDITIONAL.replace("hidden=[32, 32])", 'hidden=[32, 32], activation="tanh")')))
    with pytest.raises(GenDataError, match="do not belong to 'x'") as info:
        other.load_params(folder)
    assert "tanh" in info.value.message


def test_a_sampling_option_does_not_change_the_fingerprint(tmp_path):
    text = "model m {\n  data x: real[2]\n  x ~ evolve(flow_matching(), net=mlp(hidden=[8]), sampler=ode(steps=STEPS), guidance=0)\n}"
    trained = gendsl.compile(gendsl.parse(text.replace("STEPS", "8")))
    params = trained.init(jax.random.key(0))
    trained.save(params, tmp_path / "p")
    fewer = gendsl.compile(gendsl.parse(text.replace("STEPS", "2")))
    loaded = fewer.load_params(tmp_path / "p")
    assert jax.tree_util.tree_structure(loaded) == jax.tree_util.tree_structure(params)


def test_cli_sample_given(tmp_path, blobs):
    (tmp_path / "m.gen").write_text(JOINT)
    np.savez(tmp_path / "d.npz", **blobs)
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        assert main(["fit", str(tmp_path / "m.gen"), "--data", str(tmp_path / "d.npz"), "--steps", "3",
                     "--out", str(tmp_path / "run"), "--quiet"]) == 0
        assert main(["sample", str(tmp_path / "run"), "--n", "20", "--given", "label=2",
                     "--out", str(tmp_path / "s.npz")]) == 0
        (tmp_path / "g.json").write_text(json.dumps({"label": [[1]] * 20}))
        assert main(["sample", str(tmp_path / "run"), "--n", "20", "--given", str(tmp_path / "g.json"),
                     "--out", str(tmp_path / "t.npz")]) == 0
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            assert main(["sample", str(tmp_path / "run"), "--n", "20", "--given", "label=9",
                         "--out", str(tmp_path / "u.npz")]) == 1
    assert np.all(np.load(tmp_path / "s.npz")["label"] == 2)
    assert np.all(np.load(tmp_path / "t.npz")["label"] == 1)
    assert "tokens in 0..3" in err.getvalue()
