"""Hostile runs, round two (issue 17): solver step limits, tiny and huge data sets, damaged
checkpoints and run folders, huge sizes and options, bad distribution arguments, constant
indices out of range and silent statistics. Each was an escape (a traceback, an internal error,
a memory bomb or a silent result) before its fix; each must now be a one-line GenError (exit 1)
or a warning that is also kept in summary.json."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import warnings
from pathlib import Path

import jax
import numpy as np
import pytest

import gendsl
from gendsl import fit_metrics
from gendsl.cli import main
from gendsl.distill import distill
from gendsl.errors import GenDataError, GenRuntimeError
from gendsl.sampling_options import with_sampling

FLOW = "model m {\n  data x: real[2]\n  x ~ pushforward(normal(0, 1), coupling(layers=2, hidden=[8]))\n}\n"
FIT = ["--data", "builtin:moons", "--n", "300", "--steps", "4", "--batch-size", "64", "--checkpoint-every", "2",
       "--quiet"]


def run_cli(argv: list[str]) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        code = main([str(a) for a in argv])
    return code, err.getvalue()


def refused(argv: list[str], *words: str) -> str:
    """Run the CLI; it must exit 1 with one clean message holding ``words``."""
    code, err = run_cli(argv)
    assert code == 1 and "Traceback" not in err and "internal error" not in err, err
    for word in words:
        assert word in err, err
    return err


def compile_text(text: str) -> gendsl.Program:
    return gendsl.compile(gendsl.parse(text))


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory) -> Path:
    """A finished run (``done``) and the checkpoint of an unfinished one (``unfinished``)."""
    root = tmp_path_factory.mktemp("hostile")
    (root / "m.gen").write_text(FLOW)
    code, err = run_cli(["fit", root / "m.gen", *FIT, "--out", root / "done"])
    assert code == 0, err
    (root / "unfinished").mkdir()
    shutil.copytree(root / "done" / "checkpoint", root / "unfinished" / "checkpoint")
    return root


def _copy(runs_dir: Path, tmp_path: Path, which: str) -> Path:
    out = tmp_path / which
    shutil.copytree(runs_dir / which, out)
    return out


# -- the solver's step limit -----------------------------------------------------------------------


def _shaken(params, seed: int = 0):
    """``params`` with noise on every array: a network that starts at zero is solved in one step."""
    leaves, treedef = jax.tree_util.tree_flatten(params)
    keys = jax.random.split(jax.random.key(seed), len(leaves))
    return jax.tree_util.tree_unflatten(treedef, [x + jax.random.normal(k, x.shape, x.dtype) for x, k in zip(leaves, keys)])


CNF = ("model m {\n  data x: real[2]\n  x ~ pushforward(normal(0, 1), cnf(net=mlp(hidden=[8]), rtol=1e-12, atol=1e-12, "
       "max_steps=3))\n}\n")


def test_an_adaptive_solve_at_its_step_limit_is_a_user_error(tmp_path, capfd):
    prog = compile_text(CNF)
    params = _shaken(prog.init(jax.random.key(0)))
    with pytest.raises(GenRuntimeError, match=r"the ODE solver of 'x' did not finish .*increase max_steps \(now 3\)"):
        prog.sample(params, jax.random.key(1), 4)
    with pytest.raises(GenRuntimeError, match="the ODE solver of 'x'"):
        prog.log_prob(params, {"x": np.ones((4, 2), np.float32)})
    assert "Traceback" not in capfd.readouterr().err
    run = tmp_path / "run"  # the same through the command line, from a run folder
    run.mkdir()
    (run / "model.gen").write_text(CNF)
    (run / "run.json").write_text('{"model": "m", "dims": {}}')
    prog.save(params, run / "params")
    refused(["sample", run, "--n", "3", "--out", tmp_path / "s.npy"], "the ODE solver of 'x' did not finish")
    assert not (tmp_path / "s.npy").exists()


def test_an_evolve_ode_sampler_at_its_step_limit_is_a_user_error():
    prog = compile_text('model m {\n  data x: real[2]\n  x ~ evolve(flow_matching(), net=mlp(hidden=[8]), '
                        'sampler=ode(steps="adaptive", rtol=1e-12, atol=1e-12))\n}\n')
    with pytest.raises(GenRuntimeError, match="the ODE sampler of 'x' did not finish.*loosen rtol/atol"):
        prog.sample(_shaken(prog.init(jax.random.key(0))), jax.random.key(1), 4)


# -- data sets too small or large for the held-out metrics -------------------------------------------


def test_held_out_metrics_of_one_example_or_of_many(monkeypatch):
    """One held-out example: no energy distance (it needs two), the rest computed; many: the
    energy distance on a bounded subsample, its size stated, the NLL on every example."""
    prog = compile_text(FLOW)
    params = prog.init(jax.random.key(0))
    one = fit_metrics.evaluate_fit(prog, params, {"x": np.zeros((1, 2), np.float32)}, jax.random.key(2))
    assert one["heldout_n"] == 1 and np.isfinite(one["heldout_nll"]) and one["energy_distance"] is None
    monkeypatch.setattr(fit_metrics, "METRIC_ROWS", 30)
    heldout = {"x": np.random.default_rng(1).normal(size=(120, 2)).astype(np.float32)}
    many = fit_metrics.evaluate_fit(prog, params, heldout, jax.random.key(2))
    assert many["energy_distance_n"] == 30 and len(many["_draws"]["x"]) == 30 and many["heldout_n"] == 120


# -- damaged checkpoints and run folders -------------------------------------------------------------


def _rewrite(path: Path, change) -> None:
    arrays = dict(np.load(path))
    change(arrays)
    np.savez(path, **arrays)


def _record(arrays: dict) -> dict:
    return json.loads(bytes(arrays["__record__"]))


def _set_steps(arrays: dict, value: int) -> None:
    for k, v in arrays.items():
        if k.startswith("leaf_") and v.ndim == 0 and v.dtype.kind == "i":
            arrays[k] = np.asarray(value, v.dtype)


DAMAGED_CHECKPOINTS = {
    "step -1000000": (lambda a: _set_steps(a, -1_000_000), "at step -1000000 of 4"),
    "no record": (lambda a: a.pop("__record__"), "damaged"),
    "record not UTF-8": (lambda a: a.update(__record__=np.frombuffer(b"\xff{", np.uint8)), "damaged"),
    "losses 2-D": (lambda a: a.update(__losses__=np.zeros((2, 2))), "damaged"),
    "a leaf of text": (lambda a: a.update(leaf_00000=np.full(a["leaf_00000"].shape, "a")), "dtype <U1"),
    "a leaf renamed": (lambda a: a.update(leaf_99999=a.pop("leaf_00000")), "another model"),
    "validation curve cut": (lambda a: a.update(__record__=np.frombuffer(json.dumps(
        {**_record(a), "validation": {"steps": [1]}}).encode(), np.uint8)), "incomplete validation curve"),
}


@pytest.mark.parametrize("damage", sorted(DAMAGED_CHECKPOINTS))
def test_a_damaged_checkpoint_is_refused(tmp_path, runs_dir, damage):
    change, words = DAMAGED_CHECKPOINTS[damage]
    out = _copy(runs_dir, tmp_path, "unfinished")
    _rewrite(out / "checkpoint" / "checkpoint.npz", change)
    refused(["fit", runs_dir / "m.gen", *FIT, "--out", out, "--resume"], "checkpoint", words)
    assert not (out / "run.json").exists()


def test_a_damaged_training_log_is_read_around(tmp_path, runs_dir):
    out = _copy(runs_dir, tmp_path, "unfinished")
    (out / "checkpoint" / "training_log.csv").write_text("step,loss\nabc,1\n\u00b2,3\n2,0.5")
    code, err = run_cli(["fit", runs_dir / "m.gen", *FIT, "--out", out, "--resume"])
    assert code == 0, err


DAMAGED_RUNS = {
    "model not a name": (lambda run: (run / "run.json").write_text('{"model": 5}'), "run.json is damaged"),
    "pixels not a list": (lambda run: (run / "run.json").write_text('{"model": "m", "pixels": 5}'),
                          "run.json is damaged"),
    "parameters of text": ("text", "is damaged: it holds <U"),
    "parameters NaN": ("nan", "non-finite values"),
}


@pytest.mark.parametrize("damage", sorted(DAMAGED_RUNS))
def test_a_damaged_run_folder_is_refused(tmp_path, runs_dir, damage):
    change, words = DAMAGED_RUNS[damage]
    run = _copy(runs_dir, tmp_path, "done")
    if isinstance(change, str):
        fill = np.nan if change == "nan" else "a"
        _rewrite(run / "params" / "params.npz", lambda a: a.update({k: np.full(v.shape, fill) for k, v in a.items()}))
    else:
        change(run)
    refused(["sample", run, "--n", "3", "--out", tmp_path / "s.npy"], words)
    assert not (tmp_path / "s.npy").exists()


@pytest.mark.parametrize("path", ["a" * 100_000, "/".join(["b" * 200] * 400)])
def test_a_prior_path_the_system_cannot_look_up_is_no_run(tmp_path, path):
    (tmp_path / "p.gen").write_text('model m {\n  data x: real[2]\n  x ~ prior("' + path + '")\n}\n')
    code, err = run_cli(["describe", tmp_path / "p.gen"])
    assert code == 1 and "no trained run" in err and "internal error" not in err and len(err) < 1000, err[:500]


# -- sizes, options and arguments ------------------------------------------------------------------


def test_a_variable_too_large_for_memory_is_refused_at_check_time(tmp_path):
    (tmp_path / "h.gen").write_text("model m {\n  data y: real[3]\n  z: real[100000, 100000] ~ normal(0, 1)\n"
                                    "  y ~ normal(z[0, 0], 1)\n}\n")
    refused(["check", tmp_path / "h.gen"], "h.gen:3:3", "10,000,000,000 numbers")


def test_draws_that_cannot_fit_in_memory_are_refused_before_compiling():
    prog = compile_text("model m {\n  z: real[20000000] ~ normal(0, 1)\n}\n")
    with pytest.raises(GenDataError, match="GiB, more than half of this machine's"):
        prog.infer({}, num_chains=4, num_samples=100000, num_warmup=10)


def test_counts_that_cannot_fit_in_memory_are_refused_before_the_work(tmp_path, runs_dir):
    refused(["sample", runs_dir / "done", "--n", str(10**10), "--out", tmp_path / "s.npy"], "draw fewer at a time")
    refused(["fit", runs_dir / "m.gen", "--data", "builtin:moons", "--n", str(10**10), "--steps", "2", "--out",
             tmp_path / "r"], "draws from 1 to 10,000,000 examples")
    with pytest.raises(GenDataError, match="warm-up steps"):
        compile_text("model m {\n  mu ~ normal(0, 1)\n}\n").infer({}, num_chains=1, num_samples=10, num_warmup=10**12)
    assert not (tmp_path / "s.npy").exists() and not (tmp_path / "r").exists()


def test_sampling_time_options_keep_their_limits():
    prog = compile_text("model m {\n  data x: real[2]\n  x ~ evolve(flow_matching(), net=mlp(hidden=[4]), "
                        "sampler=ode(steps=8))\n}\n")
    with pytest.raises(GenDataError, match="steps= takes a whole number from 0 to 1000000"):
        with_sampling(prog, steps=10**9)


def test_sample_writes_only_npy_or_npz_and_checks_before_sampling(tmp_path, runs_dir):
    refused(["sample", runs_dir / "done", "--n", "3", "--out", tmp_path / "x.txt"], "must end in .npy")
    assert not (tmp_path / "x.txt").exists()
    run = _copy(runs_dir, tmp_path, "done")
    before = (run / "params" / "params.npz").read_bytes()
    refused(["sample", run, "--n", "3", "--out", run / "params" / "params.npz"], "is part of the run")
    assert (run / "params" / "params.npz").read_bytes() == before


@pytest.mark.parametrize("argv", [["fit", "m.gen", "--data", "builtin:moons", "--steps", "2", "--out", "o",
                                   "--checkpoint-every", "-5"],
                                  ["infer", "m.gen", "--data", "d.json", "--out", "o", "--max-tree-depth", "100000"]])
def test_counts_out_of_range_are_refused_by_the_parser(argv, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    err = capsys.readouterr().err
    assert info.value.code == 2 and "expected a whole number" in err and "Traceback" not in err


def test_distill_refuses_a_huge_number_of_steps():
    prog = compile_text("model m {\n  data x: real[2]\n  x ~ evolve(flow_matching(), net=mlp(hidden=[4]))\n}\n")
    with pytest.raises(GenDataError, match="steps are at most 1024"):
        distill(prog, prog.init(jax.random.key(0)), steps=10**6)


def test_infer_with_a_negative_scale_is_a_data_error_at_its_line(tmp_path):
    (tmp_path / "n.gen").write_text("model m {\n  data y: real[3]\n  mu ~ normal(0, 1)\n  y ~ normal(mu, -1)\n}\n")
    (tmp_path / "y.json").write_text('{"y": [1, 2, 3]}')
    refused(["infer", tmp_path / "n.gen", "--data", tmp_path / "y.json", "--out", tmp_path / "o", "--chains", "1",
             "--samples", "10", "--warmup", "10"], "n.gen:4:3", "invalid scale")
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("index, ok", [("1+5", False), ("2*2-1", False), ("-(1+3)", False), ("1+1", True),
                                       ("-1-2", True)])
def test_a_constant_index_out_of_range_is_a_check_error(tmp_path, index, ok):
    (tmp_path / "i.gen").write_text(f"model m {{\n  data a: real[3]\n  data y: real\n  y ~ normal(a[{index}], 1)\n}}\n")
    if ok:
        assert run_cli(["check", tmp_path / "i.gen"])[0] == 0
    else:
        refused(["check", tmp_path / "i.gen"], "i.gen:4:", "out of range for an axis of length 3")


# -- statistics that must not pass silently -----------------------------------------------------------


@pytest.mark.parametrize("latent", ["x: real ~ energy(0)", "x ~ normal(0, 1e38)"])
def test_a_flat_target_warns_on_the_terminal_and_in_the_summary(tmp_path, latent):
    (tmp_path / "f.gen").write_text(f"model m {{\n  {latent}\n}}\n")
    (tmp_path / "e.json").write_text("{}")
    code, err = run_cli(["infer", tmp_path / "f.gen", "--data", tmp_path / "e.json", "--out", tmp_path / "o",
                         "--chains", "2", "--samples", "100", "--warmup", "50"])
    assert code == 0, err
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    for words in ("the log density is the same at every draw", "r_hat above 1.01", "bulk ESS below 100 a chain"):
        assert any(words in w for w in summary["warnings"]), summary["warnings"]
        assert f"warning: {words}" in err, err
    assert "ess_tail" in summary["x"]


def test_a_well_mixed_run_does_not_warn_about_convergence():
    prog = compile_text("model m {\n  mu ~ normal(0, 1)\n}\n")
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        post = prog.infer({}, key=jax.random.key(0), num_chains=2, num_samples=500, num_warmup=100)
    assert post.summary()["mu"]["ess_tail"] > 200
    assert not [str(w.message) for w in seen if "ESS" in str(w.message) or "r_hat" in str(w.message)]


def test_tail_ess_is_arviz_tail_ess():
    import arviz as az

    from gendsl.numerics.diagnostics import ess_tail

    rng = np.random.default_rng(0)
    x = np.zeros((4, 400))
    for t in range(1, 400):
        x[:, t] = 0.7 * x[:, t - 1] + rng.normal(size=4)
    # the same estimator; numpyro and ArviZ truncate the autocorrelation sum slightly differently
    assert float(ess_tail(x)) == pytest.approx(float(az.ess(x, method="tail")), rel=0.02)


def test_a_chain_stranded_far_below_the_others_is_reported():
    """ARMA(1,1) (examples/stan_arma11.gen): a chain started at |theta| > 1, where the errors grow
    as theta^T (log density about -1e50), stays there; started at theta = 0, none does."""
    examples = Path(__file__).resolve().parents[1] / "examples"
    prog = gendsl.compile(gendsl.load(examples / "stan_arma11.gen"))
    data = json.loads((examples / "stan_arma11.json").read_text())
    with pytest.warns(UserWarning, match=r"chain\(s\) \[3\] sit at a log density far below the best chain's"):
        prog.infer(data, key=jax.random.key(0), num_samples=200, num_warmup=200, progress=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        prog.infer(data, key=jax.random.key(0), num_samples=200, num_warmup=200, progress=False, init={"theta": 0.0})
    assert not [w for w in caught if "far below" in str(w.message)]
