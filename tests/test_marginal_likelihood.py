"""``infer(log_marginal=True)``: log p(data) by tempered SMC from the posterior's Gaussian
approximation, against closed forms (conjugate models, with and without constraint transforms)."""

import json

import jax
import numpy as np
import pytest
from scipy import special, stats

from gendsl import compile, parse
from gendsl.cli import main
from gendsl.errors import GenDataError
from gendsl.inference.marginal import gaussian_reference

REPEATS = 4  # SMC runs behind each standard error


def _infer(text: str, data: dict, seed: int = 0):
    prog = compile(parse(text))
    return prog.infer(data, key=jax.random.key(seed), num_chains=2, num_samples=500, num_warmup=300,
                      log_marginal=1000)


def _close(post, exact: float) -> None:
    lm = post.log_marginal_likelihood
    assert lm.repeats == REPEATS and lm.particles == 1000 and lm.se > 0
    # the standard error comes from 4 repeats (a t with 3 degrees of freedom: 4 SE is its 97% point;
    # 6 SE its 99.3%); an SE below 0.01 nats is floored there
    assert abs(lm.value - exact) < 6 * max(lm.se, 0.01), (lm, exact)


def test_normal_mean_with_a_normal_prior():
    rng = np.random.default_rng(0)
    y = rng.normal(1.5, 1.0, 15)
    post = _infer("model m {\n  data n: int\n  data y: real[n]\n  mu ~ normal(0, 2)\n  y ~ normal(mu, 1)\n}\n",
                  {"n": 15, "y": y})
    exact = stats.multivariate_normal(np.zeros(15), np.eye(15) + 4.0 * np.ones((15, 15))).logpdf(y)
    _close(post, exact)
    assert "log p(data)" in post.summary_table()
    assert post.sampler_stats()["log_marginal_likelihood"]["value"] == post.log_marginal_likelihood.value


def test_binomial_count_with_a_beta_prior():
    post = _infer("model m {\n  data k: int\n  p ~ beta(2, 3)\n  k ~ binomial(20, p)\n}\n", {"k": 7})
    exact = np.log(special.comb(20, 7)) + special.betaln(9, 16) - special.betaln(2, 3)
    _close(post, exact)


def test_normal_precision_with_a_gamma_prior_through_its_log_transform():
    rng = np.random.default_rng(1)
    y = rng.normal(0.0, 0.7, 12)
    a, b = 3.0, 2.0
    post = _infer("model m {\n  data n: int\n  data y: real[n]\n  tau ~ gamma(3, 2)\n"
                  "  y ~ normal(0, 1 / sqrt(tau))\n}\n", {"n": 12, "y": y})
    n, ss = len(y), float(np.sum(y ** 2))
    exact = (-n / 2 * np.log(2 * np.pi) + a * np.log(b) + special.gammaln(a + n / 2) - special.gammaln(a)
             - (a + n / 2) * np.log(b + ss / 2))
    _close(post, exact)


def test_the_reference_is_the_draws_gaussian_widened_and_shrunk_when_draws_are_few():
    rng = np.random.default_rng(2)
    draws = rng.multivariate_normal([1.0, -2.0], [[1.0, 0.8], [0.8, 1.0]], 20000)
    mean, cov = gaussian_reference(draws)
    np.testing.assert_allclose(mean, [1.0, -2.0], atol=4 * np.sqrt(1 / 20000))
    np.testing.assert_allclose(cov, 2.0 * np.array([[1.0, 0.8], [0.8, 1.0]]), atol=0.05)
    _, few = gaussian_reference(draws[:15])
    assert few[0, 1] == 0.0  # 15 draws for 2 dimensions: the diagonal only


@pytest.mark.parametrize("bad", [0, 1, -5, "yes", 10**7])
def test_a_bad_log_marginal_option_is_refused(bad):
    prog = compile(parse("model m {\n  data k: int\n  p ~ beta(2, 3)\n  k ~ binomial(20, p)\n}\n"))
    with pytest.raises(GenDataError, match="log_marginal"):
        prog.infer({"k": 3}, key=jax.random.key(0), num_samples=10, num_warmup=10, log_marginal=bad)


def test_the_command_line_writes_log_p_data_into_sampler_json(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "m.gen").write_text("model m {\n  data k: int\n  p ~ beta(2, 3)\n  k ~ binomial(20, p)\n}\n")
    (tmp_path / "d.json").write_text('{"k": 7}')
    assert main(["infer", "m.gen", "--data", "d.json", "--out", "post", "--chains", "2", "--samples", "300",
                 "--warmup", "200", "--log-marginal"]) == 0
    assert "log p(data)" in capsys.readouterr().out
    lm = json.loads((tmp_path / "post" / "sampler.json").read_text())["log_marginal_likelihood"]
    exact = np.log(special.comb(20, 7)) + special.betaln(9, 16) - special.betaln(2, 3)
    assert lm["particles"] == 2000 and abs(lm["value"] - exact) < 6 * max(lm["se"], 0.01)
