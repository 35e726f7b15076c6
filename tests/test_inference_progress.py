"""Live progress of posterior inference: every chain reports to the end, its divergences so far
agree with the posterior's, in every chain layout, and the compiled program stays one program."""

import warnings

import jax
import numpy as np
import pytest

import gendsl
from gendsl.inference import progress

#: the centred eight schools at a low acceptance target: divergences after warm-up
CENTRED = """
model centred {
  data J: int
  data sigma: real[J]
  data y: real[J]
  mu ~ normal(0, 5)
  tau ~ half_cauchy(5)
  theta: real[J] ~ normal(mu, tau)
  y ~ normal(theta, sigma)
}
"""
DATA = {"J": 8, "y": [28.0, 8.0, -3.0, 7.0, -1.0, 1.0, 18.0, 12.0],
        "sigma": [15.0, 10.0, 16.0, 11.0, 9.0, 11.0, 10.0, 18.0]}


@pytest.mark.parametrize("chain_method", ["vectorized", "sequential"])
def test_every_chain_reports_its_transitions_and_divergences(chain_method, monkeypatch, capsys):
    seen = {}
    update = progress.ChainLines.update

    def record(self, chain, done, divergences):
        seen.setdefault(chain, []).append((done, divergences))
        update(self, chain, done, divergences)

    monkeypatch.setattr(progress.ChainLines, "update", record)
    prog = gendsl.compile(gendsl.parse(CENTRED))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        post = prog.infer(DATA, key=jax.random.key(1), num_chains=3, num_samples=200, num_warmup=100,
                          target_accept=0.6, progress=True, chain_method=chain_method)
    assert sorted(seen) == [0, 1, 2]
    for chain, reports in seen.items():
        done = [d for d, _ in reports]
        assert done == sorted(done) and done[-1] == 300 and len(done) >= 10
        assert reports[-1][1] == post.divergences.per_chain[chain]
        assert all(np.diff([v for _, v in reports]) >= 0)
    assert int(post.divergences) > 0  # the test sees divergences being counted
    err = capsys.readouterr().err
    assert "chain 2" in err and "divergent" in err


def test_without_progress_nothing_is_shown(capsys):
    prog = gendsl.compile(gendsl.parse("model m {\n  mu ~ normal(0, 1)\n}\n"))
    post = prog.infer({}, key=jax.random.key(0), num_chains=2, num_samples=50, num_warmup=50, progress=False)
    assert post.samples["mu"].shape == (2, 50)
    assert "chain 0" not in capsys.readouterr().err
    assert not progress._current


def test_cli_infer_takes_the_sampler_options_and_init(tmp_path):
    import json

    from gendsl.cli import main

    (tmp_path / "m.gen").write_text(CENTRED)
    (tmp_path / "d.json").write_text(json.dumps(DATA))
    out = tmp_path / "run"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["infer", str(tmp_path / "m.gen"), "--data", str(tmp_path / "d.json"), "--out", str(out),
                     "--chains", "2", "--samples", "100", "--warmup", "100", "--target-accept", "0.99",
                     "--max-tree-depth", "4", "--mass", "diagonal", "--init", "mu=30", "--init", "tau=2"]) == 0
    sampler = json.loads((out / "sampler.json").read_text())
    assert "max_tree_depth=4" in sampler["kernel"] and "target_accept=0.99" in sampler["kernel"]
    assert "mass=diagonal" in sampler["kernel"]
    assert max(sampler["mean_tree_depth"]) <= 4
    with pytest.raises(SystemExit):  # argparse: "expected a number between 0 and 1"
        main(["infer", str(tmp_path / "m.gen"), "--data", str(tmp_path / "d.json"), "--out", str(out),
              "--target-accept", "1.5"])


def test_a_chain_that_does_not_move_is_reported():
    prog = gendsl.compile(gendsl.parse("model m {\n  mu ~ normal(0, 1)\n}\n"))
    with pytest.warns(UserWarning, match=r"chain\(s\) \[0, 1\] did not move"):
        prog.infer({}, key=jax.random.key(0), num_chains=2, num_samples=20, num_warmup=0, kernel="hmc",
                   step_size=1e3, progress=False)
