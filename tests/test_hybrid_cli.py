"""Unseen hybrid models, each mixing three or four mechanisms, run end to end through the CLI:
check, describe (the joint's likelihood kind is the weakest node's), fit on a data file, sample,
and the held-out score in metrics.json. Tiny networks and a few steps: this checks the plumbing,
not the quality."""

import json
import re

import numpy as np
import pytest

from gendsl.cli import main

N = 240

# tokens (factorize) condition a flow-matching model (evolve), both condition a flow (pushforward)
TOKENS_EVOLVE_FLOW = """\
model tokens_evolve_flow {
  data label: token[1] of 3
  data x: real[2]
  data y: real[2]
  label ~ factorize(mlp(hidden=[16]))
  x ~ evolve(flow_matching(), net=mlp(hidden=[16]), sampler=ode(steps=3), given=label)
  y ~ pushforward(normal(0, 1), coupling(layers=2, hidden=[16]), given=[x, label])
}
"""

# an energy tilting a coupling flow, tokens conditioned on it, a leaf reading it
TILTED_TOKENS_LEAF = """\
model tilted_tokens_leaf {
  data x: real[2]
  data c: token[3] of 4
  data w: positive
  x ~ energy(mlp(hidden=[16]), base=pushforward(normal(0, 1), coupling(layers=2, hidden=[16])), train=dsm(sigma=0.1, levels=1), sampler=mala(step_size=0.02, steps=4))
  c ~ factorize(made(hidden=[16]), given=x)
  w ~ lognormal(0.5 * x[0], 1)
}
"""

# a leaf, a token model conditioned on it, an autoregressive flow conditioned on both: all exact
LEAF_TOKENS_MAF = """\
model leaf_tokens_maf {
  data z: real[2]
  data k: token[1] of 3
  data x: real[3]
  z ~ normal(0, 1)
  k ~ factorize(made(hidden=[16]), given=z)
  x ~ pushforward(normal(0, 1), maf(layers=2, hidden=[16]), given=[k, z])
}
"""


def _tokens_evolve_flow(rng):
    label = rng.integers(0, 3, size=(N, 1))
    x = np.array([[-2.0, 0.0], [0.0, 2.0], [2.0, 0.0]])[label[:, 0]] + 0.3 * rng.normal(size=(N, 2))
    return {"label": label, "x": x, "y": x + 0.5 * rng.normal(size=(N, 2))}


def _tilted_tokens_leaf(rng):
    x = rng.normal(size=(N, 2))
    return {"x": x, "c": rng.integers(0, 4, size=(N, 3)), "w": np.exp(0.5 * x[:, 0] + rng.normal(size=N))}


def _leaf_tokens_maf(rng):
    z = rng.normal(size=(N, 2))
    return {"z": z, "k": rng.integers(0, 3, size=(N, 1)), "x": rng.normal(size=(N, 3)) + z.sum(1, keepdims=True)}


CASES = {
    "tokens_evolve_flow": (TOKENS_EVOLVE_FLOW, _tokens_evolve_flow, "estimate"),
    "tilted_tokens_leaf": (TILTED_TOKENS_LEAF, _tilted_tokens_leaf, "unnormalized"),
    "leaf_tokens_maf": (LEAF_TOKENS_MAF, _leaf_tokens_maf, "exact"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_hybrid_model_through_the_cli(name, tmp_path, monkeypatch, capsys):
    text, make_data, kind = CASES[name]
    monkeypatch.chdir(tmp_path)
    (tmp_path / "m.gen").write_text(text)
    data = {k: (v.astype(np.int32) if v.dtype.kind == "i" else v.astype(np.float32))
            for k, v in make_data(np.random.default_rng(0)).items()}
    np.savez(tmp_path / "data.npz", **data)

    assert main(["check", "m.gen"]) == 0
    out = capsys.readouterr().out
    assert "m.gen: ok (1 model)" in out and "not compiled" not in out

    assert main(["describe", "m.gen"]) == 0
    plan = capsys.readouterr().out
    assert re.search(rf"^joint: log_prob kind = {kind};", plan, re.M), plan

    assert main(["fit", "m.gen", "--data", "data.npz", "--steps", "3", "--batch-size", "64", "--out", "run",
                 "--quiet"]) == 0
    capsys.readouterr()
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["log_prob_kind"] == kind
    if kind in ("exact", "estimate"):
        assert np.isfinite(metrics["heldout_nll"]), metrics
    else:
        assert metrics["heldout_nll"] is None
    assert np.isfinite(metrics["final_loss"]) and metrics["nfe_per_sample"] > 0
    assert metrics["energy_distance"] is not None and np.isfinite(metrics["energy_distance"])

    assert main(["sample", "run", "--n", "16", "--out", "draws.npz"]) == 0
    with np.load(tmp_path / "draws.npz") as draws:
        assert set(draws.files) >= set(data)
        for k, v in data.items():
            assert draws[k].shape == (16, *v.shape[1:]), k
            assert np.all(np.isfinite(draws[k])), k
            if v.dtype.kind == "i":  # tokens inside the vocabulary
                assert draws[k].min() >= 0 and draws[k].max() <= v.max()


def test_a_learned_prior_in_a_hybrid_run_is_found_from_anywhere(tmp_path, monkeypatch, capsys):
    """A run whose model reads prior("runs/g") samples from another working directory, and is
    itself a prior of a model elsewhere (the run records where it was fit from)."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    rng = np.random.default_rng(0)
    (work / "g.gen").write_text("model g {\n  data x: real[2]\n"
                                "  x ~ pushforward(normal(0, 1), coupling(layers=2, hidden=[8]))\n}\n")
    np.save(work / "x.npy", rng.normal(size=(N, 2)).astype(np.float32))
    (work / "h.gen").write_text("model h {\n  data x: real[2]\n  data k: token[1] of 3\n  data y: real[2]\n"
                                "  x ~ prior(\"runs/g\")\n  k ~ factorize(mlp(hidden=[8]), given=x)\n"
                                "  y ~ pushforward(normal(0, 1), coupling(layers=2, hidden=[8]), given=[x, k])\n}\n")
    np.savez(work / "h.npz", x=rng.normal(size=(N, 2)).astype(np.float32),
             k=rng.integers(0, 3, (N, 1)).astype(np.int32), y=rng.normal(size=(N, 2)).astype(np.float32))
    assert main(["fit", "g.gen", "--data", "x.npy", "--steps", "2", "--out", "runs/g", "--quiet"]) == 0
    assert main(["fit", "h.gen", "--data", "h.npz", "--steps", "2", "--out", "runs/h", "--quiet"]) == 0
    metrics = json.loads((work / "runs" / "h" / "metrics.json").read_text())
    assert metrics["log_prob_kind"] == "exact" and np.isfinite(metrics["heldout_nll"])
    monkeypatch.chdir(tmp_path)  # elsewhere
    assert main(["sample", "work/runs/h", "--n", "8", "--out", "draws.npz"]) == 0
    with np.load(tmp_path / "draws.npz") as draws:
        assert draws["x"].shape == (8, 2) and draws["k"].shape == (8, 1) and np.isfinite(draws["y"]).all()
    (tmp_path / "q.gen").write_text('model q {\n  data y: real[2]\n  x ~ prior("work/runs/h", node="x")\n'
                                    '  y ~ normal(x, 1)\n}\n')
    capsys.readouterr()
    assert main(["describe", "q.gen"]) == 0
    assert "prior(h.x: prior(g.x: pushforward(coupling)))" in capsys.readouterr().out
