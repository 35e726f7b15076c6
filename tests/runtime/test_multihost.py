"""A two-process localhost run of jax.distributed on the CPU backend (gloo collectives):
`gendsl fit --coordinator ... --num-processes 2 --process-id I` trains across both processes'
devices; only process 0 writes the run folder."""

import json
import os
import socket
import subprocess
import sys

import numpy as np

TEXT = "model m {\n  data x: real[2]\n  x ~ factorize(made(hidden=[16], components=2))\n}\n"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_train_one_model(tmp_path):
    (tmp_path / "m.gen").write_text(TEXT)
    np.save(tmp_path / "x.npy", np.random.default_rng(0).normal([1, -1], 0.5, size=(2000, 2)).astype(np.float32))
    port = _free_port()
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2", "JAX_PLATFORMS": "cpu"}
    cmd = [sys.executable, "-m", "gendsl.cli", "fit", "m.gen", "--data", "x.npy", "--steps", "150", "--lr", "0.01", "--out", "out",
           "--quiet", "--batch-size", "64", "--coordinator", f"127.0.0.1:{port}", "--num-processes", "2"]
    procs = [subprocess.Popen([*cmd, "--process-id", str(i)], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for i in (0, 1)]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err[-2000:]
    assert "wrote out" in outs[0][0] and "wrote" not in outs[1][0]
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["n_train"] == 900  # process 0's rows: half the data, less its 10% held out
    assert metrics["final_loss"] < 2.5 and metrics["heldout_nll"] < 2.5  # N([1,-1], 0.5^2 I) has entropy 1.45
