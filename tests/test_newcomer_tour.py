"""The newcomer's tour of issue 15, from the command line only: fit a class-conditional model,
sample a chosen class, change guidance, steps and sampler at sample time, distill, sample the
student; each step prints its one-line summary and records what it did."""

import contextlib
import io
import json

import numpy as np

from gendsl.cli import main

MODEL = """model tour {
  data label: token[1] of 2
  data x: real[2]
  label ~ factorize(mlp(hidden=[8]))
  x ~ evolve(vp(), net=mlp(hidden=[32, 32]), sampler=ode(steps=8), given=label, guidance=0.5)
}
"""


def gendsl(*argv) -> str:
    """Run the CLI; its exit code must be 0; returns what it printed."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in argv])
    assert code == 0, err.getvalue()
    return out.getvalue()


def test_the_tour(tmp_path):
    rng = np.random.default_rng(0)
    label = rng.integers(0, 2, (600, 1))
    centres = np.array([[-2.0, 0.0], [2.0, 0.0]])
    np.savez(tmp_path / "data.npz", label=label, x=centres[label[:, 0]] + 0.3 * rng.normal(size=(600, 2)))
    (tmp_path / "tour.gen").write_text(MODEL)
    run, student = tmp_path / "run", tmp_path / "student"

    printed = gendsl("fit", tmp_path / "tour.gen", "--data", tmp_path / "data.npz", "--steps", 300, "--out", run,
                     "--quiet")
    assert "held-out" in printed or "nll" in printed.lower()

    # one class, then other guidance, steps and sampler: each recorded beside the draws
    printed = gendsl("sample", run, "--n", 200, "--given", "label=1", "--out", tmp_path / "one.npz")
    assert "200 draws" in printed and "network evaluations per draw: x 32" in printed
    one = np.load(tmp_path / "one.npz")["x"]
    assert np.mean(one[:, 0] > 0) > 0.9  # the chosen class's cluster
    printed = gendsl("sample", run, "--n", 50, "--given", "label=0", "--guidance", 2.0, "--sampler", "edm_heun",
                     "--steps", 6, "--out", tmp_path / "edm.npz")
    record = json.loads((tmp_path / "edm.npz.json").read_text())
    assert record["sampling_options"] == {"sampler": "edm_heun", "steps": 6, "guidance": 2.0}
    assert record["given"] == {"label": 0} and record["nfe"]["x"] == 2 * (2 * 6 - 1)
    assert "edm heun, 6 noise levels, guidance 2" in record["samplers"]["x"]
    assert np.mean(np.load(tmp_path / "edm.npz")["x"][:, 0] < 0) > 0.9

    printed = gendsl("distill", run, "--steps", 1, "--out", student, "--train-steps", 50, "--pairs", 512)
    assert "distilled" in printed and (student / "metrics.json").exists()
    printed = gendsl("sample", student, "--n", 20, "--given", "label=1", "--out", tmp_path / "fast.npz")
    assert json.loads((tmp_path / "fast.npz.json").read_text())["nfe"]["x"] in (1, 2)  # one step (twice if guided)
