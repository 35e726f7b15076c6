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
