"""Sampling-time choices (issue 15): steps, solver and guidance per call, in Python and on the
command line, without retraining and with the language's own option rules."""

from __future__ import annotations

import contextlib
import io

import jax
import numpy as np
import pytest

import gendsl
from gendsl.cli import main
from gendsl.errors import GenError

MODEL = """model m {
  data label: token[1] of 2
  data x: real[2]
  label ~ factorize(mlp(hidden=[8]))
  x ~ evolve(flow_matching(), net=mlp(hidden=[16]), sampler=ode(steps=8, solver="heun"), given=label)
}
"""


@pytest.fixture(scope="module")
def prog_params():
    prog = gendsl.compile(gendsl.parse(MODEL))
    return prog, prog.init(jax.random.key(0))


@pytest.mark.parametrize("changes,nfe", [({}, 16), ({"steps": 3}, 6), ({"steps": 5, "solver": "euler"}, 5),
                                         ({"steps": 2, "guidance": 1.5}, 8)])
def test_steps_solver_and_guidance_change_the_network_evaluations(prog_params, changes, nfe):
    """Heun takes 2 evaluations a step, Euler 1, and guidance doubles them (with and without the
    context); the parameters stay those of the original model."""
    prog, params = prog_params
    _, info = gendsl.with_sampling(prog, **changes).sample_with_info(params, jax.random.key(1), 4)
    assert int(info["x"]["nfe"]) == nfe


def test_guidance_changes_the_draws_and_not_the_model(prog_params):
    prog, params = prog_params
    params = jax.tree_util.tree_map(lambda a: a + 0.3 * jax.random.normal(jax.random.key(2), a.shape), params)
    plain = prog.sample(params, jax.random.key(3), 64, given={"label": 1})["x"]
    guided = gendsl.with_sampling(prog, guidance=2.0).sample(params, jax.random.key(3), 64, given={"label": 1})["x"]
    assert np.max(np.abs(np.asarray(plain) - np.asarray(guided))) > 1e-3
    assert prog.model["x"].spec["guidance"] == 0.0


@pytest.mark.parametrize("changes,words", [({"solver": "rk99"}, "one of 'euler'"), ({"steps": 0}, "positive integer"),
                                           ({"stepz": 3}, "no node of 'm' has the sampling option stepz"),
                                           ({"guidance": "high"}, "takes number values")])
def test_bad_sampling_options_are_refused(prog_params, changes, words):
    with pytest.raises(GenError, match=words):
        gendsl.with_sampling(prog_params[0], **changes)


def test_cli_sample_with_other_steps(tmp_path):
    (tmp_path / "m.gen").write_text(MODEL)
    rng = np.random.default_rng(0)
    label = rng.integers(0, 2, (200, 1))
    np.savez(tmp_path / "d.npz", label=label, x=rng.normal(size=(200, 2)) + 3 * label)
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        assert main(["fit", str(tmp_path / "m.gen"), "--data", str(tmp_path / "d.npz"), "--steps", "2",
                     "--out", str(tmp_path / "run"), "--quiet"]) == 0
        for steps in ("2", "adaptive"):
            assert main(["sample", str(tmp_path / "run"), "--n", "10", "--steps", steps, "--solver", "tsit5",
                         "--guidance", "1.0", "--given", "label=1", "--out", str(tmp_path / f"s{steps}.npz")]) == 0
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            assert main(["sample", str(tmp_path / "run"), "--n", "10", "--solver", "rk4",
                         "--out", str(tmp_path / "bad.npz")]) == 1
    assert np.load(tmp_path / "s2.npz")["x"].shape == (10, 2)
    assert "one of 'euler'" in err.getvalue()


EDM_MODEL = """model e {
  data x: real[2]
  x ~ evolve(edm(), net=mlp(hidden=[16]))
}
"""


@pytest.mark.parametrize("changes,nfe", [({"sampler": "edm_heun"}, 35),
                                         ({"sampler": "edm_heun", "steps": 6, "churn": 2.0}, 11),
                                         ({"sampler": "dpm_solver", "steps": 7}, 7)])
def test_another_sampler_at_sampling_time(changes, nfe):
    prog = gendsl.compile(gendsl.parse(EDM_MODEL))
    params = prog.init(jax.random.key(0))
    draws, info = gendsl.with_sampling(prog, **changes).sample_with_info(params, jax.random.key(1), 16)
    assert int(info["x"]["nfe"]) == nfe and np.all(np.isfinite(np.asarray(draws["x"])))
    assert gendsl.with_sampling(prog, **changes).lowered().stochastic[0].mechanism.cost() == nfe


def test_another_sampler_is_checked(prog_params):
    with pytest.raises(GenError, match="infinite at the noise end of flow_matching"):
        gendsl.with_sampling(prog_params[0], sampler="edm_heun")
    with pytest.raises(GenError, match="sampler= takes one of .*edm_heun"):
        gendsl.with_sampling(prog_params[0], sampler="rk4")
