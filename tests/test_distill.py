"""Distillation of evolve nodes into K-step maps: cost, quality against the teacher, save / load, run folders."""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest
from scipy.spatial.distance import cdist

import gendsl
from gendsl.distill import distill_run
from gendsl.errors import GenDataError, GenRuntimeError
from gendsl.runfolder import open_run

TEXT = """model blobs {
  data x: real[2]
  x ~ evolve(flow_matching(), net=mlp(hidden=[64, 64]), sampler=ode(steps=16))
}"""
CENTRES = np.array([[-2.0, 1.0], [2.0, -1.0]])


def blobs(rng, n):
    return CENTRES[rng.integers(0, 2, n)] + 0.3 * rng.standard_normal((n, 2))


def energy_distance(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return 2 * cdist(a, b).mean() - cdist(a, a).mean() - cdist(b, b).mean()


@pytest.fixture(scope="module")
def teacher():
    rng = np.random.default_rng(0)
    prog = gendsl.compile(gendsl.parse(TEXT))
    fit = prog.fit({"x": blobs(rng, 3000)}, steps=600, key=jax.random.key(0), progress=False)
    return prog, fit.params, blobs(rng, 1000)


@pytest.fixture(scope="module")
def one_step(teacher):
    prog, params, _ = teacher
    return gendsl.distill(prog, params, steps=1, key=jax.random.key(1), train_steps=600, pairs=4096, batch_size=256)


def test_student_is_a_one_step_map_close_to_its_teacher(teacher, one_step):
    prog, params, held = teacher
    student, student_params = one_step
    plan = student.describe()
    assert "1-step distilled map" in plan and "network evaluations per joint sample = 1" in plan
    assert student.lowered().stochastic[0].mechanism.cost() == 1
    reference = prog.sample(params, jax.random.key(2), 1000)["x"]
    draws = student.sample(student_params, jax.random.key(3), 1000)["x"]
    times = student_params["x"]["times"]
    undistilled = student.sample({"x": {**params["x"], "times": times}}, jax.random.key(3), 1000)["x"]  # teacher's net
    d_student = energy_distance(draws, held)
    assert d_student < 0.25 * energy_distance(undistilled, held), d_student
    assert d_student < energy_distance(reference, held) + 0.05, (d_student, energy_distance(reference, held))
    with pytest.raises(GenRuntimeError, match="no likelihood"):
        student.log_prob(student_params, {"x": held})


def test_two_step_student_and_saved_parameters(teacher, tmp_path):
    prog, params, _ = teacher
    student, student_params = gendsl.distill(prog, params, steps=2, key=jax.random.key(4), train_steps=50, pairs=512)
    assert student.lowered().stochastic[0].mechanism.cost() == 2
    student.save(student_params, tmp_path / "params")
    loaded = student.load_params(tmp_path / "params")
    a = student.sample(student_params, jax.random.key(5), 64)["x"]
    b = student.sample(loaded, jax.random.key(5), 64)["x"]
    np.testing.assert_array_equal(a, b)


def test_distill_run_writes_a_sampleable_folder(teacher, tmp_path):
    prog, params, _ = teacher
    run = tmp_path / "run"
    run.mkdir()
    (run / "model.gen").write_text(TEXT)
    (run / "run.json").write_text(json.dumps({"model": "blobs", "dims": {}, "seed": 0}))
    prog.save(params, run / "params")
    out = tmp_path / "student"
    metrics = distill_run(run, 1, out, seed=3, train_steps=20, pairs=256, progress=False)
    assert metrics == json.loads((out / "metrics.json").read_text())
    assert metrics["nfe_per_sample"] == 1 and metrics["teacher_nfe_per_sample"] >= 32
    assert metrics["energy_distance_to_teacher"] > 0 and metrics["energy_distance_over_floor"] > 0
    assert (out / "samples.png").stat().st_size > 0
    assert (out / "model.gen").read_text().startswith("# distilled: x sampled in 1 step(s)")
    record = json.loads((out / "run.json").read_text())
    assert record["distilled_steps"] == 1 and record["distilled_nodes"] == ["x"] and record["model"] == "blobs"
    _run = open_run(out)
    student, student_params = _run.program, _run.params
    assert student.lowered().stochastic[0].mechanism.cost() == 1
    assert student.sample(student_params, jax.random.key(6), 10)["x"].shape == (10, 2)
    _run = open_run(run)
    teacher_again, _ = _run.program, _run.params
    assert teacher_again.lowered().stochastic[0].mechanism.cost() == 32
    with pytest.raises(GenDataError, match="do not belong to 'x'"):  # a student's parameters never load into its teacher
        teacher_again.load_params(out)
    with pytest.raises(GenDataError, match="already"):
        distill_run(out, 1, tmp_path / "again")
    with pytest.raises(GenDataError, match="the teacher's run folder"):
        distill_run(run, 1, run)


def test_distill_needs_an_evolve_node_and_positive_steps(teacher):
    prog, params, _ = teacher
    with pytest.raises(GenDataError, match="steps >= 1"):
        gendsl.distill(prog, params, steps=0)
    leaf = gendsl.compile(gendsl.parse("model m {\n  data x: real[2]\n  x ~ normal(0, 1)\n}"))
    with pytest.raises(GenRuntimeError, match="no evolve node"):
        gendsl.distill(leaf, {"x": {}}, steps=1)
