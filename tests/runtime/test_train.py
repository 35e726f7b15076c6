"""The training loop's fault handling: non-finite losses roll back, checkpoints resume bitwise."""

import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import optax
import pytest

import gendsl
from gendsl.numerics.train import batch_indices, chunk_size

TEXT = "model m {\n  data x: real[2]\n  x ~ factorize(made(hidden=[16], components=2))\n}\n"


@pytest.fixture(scope="module")
def prog():
    return gendsl.compile(gendsl.parse(TEXT))


@pytest.fixture(scope="module")
def x():
    return np.random.default_rng(0).normal(size=(800, 2)).astype(np.float32)


def test_batches_cover_each_epoch_exactly_once():
    key = jax.random.key(0)
    idx = np.concatenate([np.asarray(batch_indices(key, s, 100, 20)) for s in range(5)])
    assert sorted(idx.tolist()) == list(range(100))
    assert chunk_size(1000) == chunk_size(1000)


def test_non_finite_loss_rolls_back_and_lowers_the_learning_rate(prog, x):
    with pytest.warns(RuntimeWarning, match="rolled back"):
        fit = prog.fit({"x": x}, steps=200, key=jax.random.key(0), batch_size=64, optimizer=optax.sgd(1e7),
                       progress=False, lr_backoff=1e-5, max_retries=3)
    assert np.all(np.isfinite(fit.losses)) and fit.losses.shape == (200,)
    assert float(fit.state.lr_scale) < 1e-4


def test_repeated_failures_stop_with_the_last_good_parameters(prog, x):
    with pytest.raises(gendsl.GenRuntimeError, match="non-finite") as info:
        with pytest.warns(RuntimeWarning):
            prog.fit({"x": x}, steps=40, key=jax.random.key(0), batch_size=64, optimizer=optax.sgd(1e12),
                     progress=False, lr_backoff=0.5, max_retries=2)
    params = info.value.params
    assert all(np.all(np.isfinite(leaf)) for leaf in jax.tree_util.tree_leaves(params))


def test_resume_after_interruption_is_bitwise_equal(prog, x, tmp_path, monkeypatch):
    full = prog.fit({"x": x}, steps=60, key=jax.random.key(3), batch_size=64, progress=False)

    import gendsl.program as program_module
    from gendsl.numerics import train

    class Killed(Exception):
        pass

    def dying_run(*args, checkpoint=None, **kwargs):
        def save_then_die(state, losses, tracking):
            checkpoint(state, losses, tracking)
            if int(state.step) >= 20:
                raise Killed

        return train.run(*args, checkpoint=save_then_die, **kwargs)

    monkeypatch.setattr(program_module, "run", dying_run)
    with pytest.raises(Killed):
        prog.fit({"x": x}, steps=60, key=jax.random.key(3), batch_size=64, progress=False,
                 checkpoint_dir=tmp_path, checkpoint_every=9)
    monkeypatch.undo()
    resumed = prog.fit({"x": x}, steps=60, key=jax.random.key(3), batch_size=64, progress=False,
                       checkpoint_dir=tmp_path, checkpoint_every=9, resume=True)
    np.testing.assert_array_equal(resumed.losses, full.losses)
    for a, b in zip(jax.tree_util.tree_leaves(resumed.params), jax.tree_util.tree_leaves(full.params)):
        np.testing.assert_array_equal(a, b)


def test_resume_refuses_a_checkpoint_of_another_run(prog, x, tmp_path):
    prog.fit({"x": x}, steps=10, key=jax.random.key(3), batch_size=64, progress=False, checkpoint_dir=tmp_path)
    with pytest.raises(gendsl.GenDataError, match="different run"):
        prog.fit({"x": x}, steps=20, key=jax.random.key(3), batch_size=32, progress=False,
                 checkpoint_dir=tmp_path, resume=True)


def test_cli_fit_killed_with_sigkill_resumes_bitwise(tmp_path):
    model = tmp_path / "m.gen"
    model.write_text(TEXT)
    data = tmp_path / "x.npy"
    np.save(data, np.random.default_rng(1).normal(size=(600, 2)).astype(np.float32))
    base = [sys.executable, "-m", "gendsl.cli", "fit", str(model), "--data", str(data), "--steps", "400",
            "--batch-size", "32", "--quiet", "--checkpoint-every", "20"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    subprocess.run([*base, "--out", str(tmp_path / "whole")], check=True, env=env, capture_output=True)
    victim = subprocess.Popen([*base, "--out", str(tmp_path / "cut")], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ckpt = tmp_path / "cut" / "checkpoint" / "checkpoint.npz"
    deadline = time.time() + 120
    while not ckpt.exists() and time.time() < deadline and victim.poll() is None:
        time.sleep(0.05)
    time.sleep(0.3)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    subprocess.run([*base, "--out", str(tmp_path / "cut"), "--resume"], check=True, env=env, capture_output=True)
    with np.load(tmp_path / "whole" / "params" / "params.npz") as a, np.load(tmp_path / "cut" / "params" / "params.npz") as b:
        assert a.files == b.files
        for k in a.files:
            np.testing.assert_array_equal(a[k], b[k])
