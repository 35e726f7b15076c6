"""Compile once: a Program traces each node once per shape and reuses the compiled program
(as blackjax's tests/test_compilation.py checks its kernels).

Each test counts how often a node's method runs in Python: it runs once per trace, never per
step or per call of the compiled program.
"""

from __future__ import annotations

import jax
import numpy as np

import gendsl

FLOW = "model m {\n  data x: real[2]\n  x ~ pushforward(normal(0, 1), coupling(layers=2, hidden=[8]))\n}\n"


def _counted(node, method: str) -> list:
    """Make ``node.method`` append to the returned list each time Python runs it."""
    calls, original = [], getattr(node, method)

    def wrapper(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    setattr(node, method, wrapper)
    return calls


def _data(seed: int, n: int = 64) -> dict:
    return {"x": np.random.default_rng(seed).normal(size=(n, 2)).astype(np.float32)}


def test_fit_twice_with_the_same_shapes_compiles_once():
    prog = gendsl.compile(gendsl.parse(FLOW))
    calls = _counted(prog.lowered(_data(0)).node("x").mechanism, "train_loss")
    first = prog.fit(_data(0), steps=30, key=jax.random.key(0), batch_size=16, progress=False)
    traced = len(calls)
    assert traced >= 1
    second = prog.fit(_data(1), steps=30, key=jax.random.key(1), batch_size=16, progress=False)
    assert len(calls) == traced, "the second fit traced the loss again"
    assert not np.allclose(first.losses, second.losses)  # it did train, on the new data and key


def test_fit_with_other_shapes_compiles_again():
    prog = gendsl.compile(gendsl.parse(FLOW))
    calls = _counted(prog.lowered(_data(0)).node("x").mechanism, "train_loss")
    prog.fit(_data(0), steps=10, key=jax.random.key(0), batch_size=16, progress=False)
    traced = len(calls)
    prog.fit(_data(0), steps=10, key=jax.random.key(0), batch_size=32, progress=False)
    assert len(calls) > traced


def test_sample_and_log_prob_trace_once_per_shape():
    prog = gendsl.compile(gendsl.parse(FLOW))
    params = prog.init(jax.random.key(0))
    node = prog.lowered().node("x").mechanism
    sampled, scored = _counted(node, "sample"), _counted(node, "log_prob")
    for seed in range(3):
        prog.sample(params, jax.random.key(seed), 100)
        prog.log_prob(params, _data(seed))
    assert (len(sampled), len(scored)) == (1, 1)
    prog.sample(params, jax.random.key(0), 50)
    assert len(sampled) == 2


def test_infer_with_new_data_of_the_same_shapes_compiles_nothing():
    prog = gendsl.compile(gendsl.parse("model m {\n  data n: int\n  data y: real[n]\n  mu ~ normal(0, 5)\n"
                                       "  y ~ normal(mu, 1)\n}\n"))
    y = np.random.default_rng(0).normal(1.0, 1.0, size=8)
    node = prog.lowered({"n": 8, "y": y}).node("mu").mechanism
    calls = _counted(node, "log_prob")
    first = prog.infer({"n": 8, "y": y}, key=jax.random.key(0), num_chains=2, num_samples=50, num_warmup=50)
    traced = len(calls)
    assert traced >= 1
    second = prog.infer({"n": 8, "y": y + 3.0}, key=jax.random.key(1), num_chains=2, num_samples=50, num_warmup=50)
    assert len(calls) == traced, "new data values of the same shapes traced the log density again"
    assert float(second.samples["mu"].mean()) > float(first.samples["mu"].mean()) + 2.0  # and it used them
