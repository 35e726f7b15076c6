"""Posterior inference: the compiled log joint against numpyro's potential, NUTS / HMC posteriors
against closed forms and reference values (tolerances from Monte-Carlo standard errors),
constraints, diagnostics, the x64 scope, caching, errors, and the files ``gendsl infer`` writes."""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro.infer.util import potential_energy
from scipy import stats

import gendsl
from gendsl.errors import GenDataError, GenRuntimeError, GenSemanticError
from gendsl.inference import log_joint
from gendsl.inference_run import infer_run, write_posterior
from gendsl.mechanisms.leaf import Leaf

EIGHT_SCHOOLS = (Path(__file__).resolve().parents[1] / "examples" / "eight_schools.gen").read_text()
SCHOOLS = {"J": 8, "y": [28.0, 8.0, -3.0, 7.0, -1.0, 1.0, 18.0, 12.0], "sigma": [15.0, 10.0, 16.0, 11.0, 9.0, 11.0, 10.0, 18.0]}
#: posterior means of mu and tau, from 8 chains x 25,000 draws (benchmarks/inference.py --reference)
SCHOOLS_REFERENCE = {"mu": (4.399, 0.007), "tau": (3.595, 0.008)}

CONSTRAINED = """
model constrained {
  data k: int[5]
  data c: int[6]
  data ev: int[4]
  p ~ beta(2, 2)
  k ~ binomial(10, p)
  w: unit[3] ~ dirichlet([1, 2, 3])
  c ~ categorical(w)
  lam ~ gamma(3, 2)
  ev ~ poisson(lam)
  lo ~ normal(0, 1)
  u ~ uniform(lo, lo + 2)
  gap = u - lo
}
"""
CONSTRAINED_DATA = {"k": [3, 5, 4, 6, 2], "c": [0, 2, 2, 1, 2, 0], "ev": [2, 4, 1, 3]}

TARGETS = """
model targets {
  v ~ normal(0, 3)
  z: real[3] ~ normal(0, 1)
  x = z * exp(v / 2)
  b: real[2] ~ energy(b[0]^2 / 8 + (b[1] - b[0]^2 / 4)^2 / 2)
}
"""


def compile_text(text: str) -> gendsl.Program:
    return gendsl.compile(gendsl.parse(text))


def zscore(draws: np.ndarray, truth: float) -> float:
    from gendsl.numerics.diagnostics import summarize

    s = summarize({"f": draws})["f"]
    return (s["mean"] - truth) / s["mcse_mean"]


# -- the log joint ---------------------------------------------------------------------------------


def schools_numpyro(J, y, sigma):
    mu = numpyro.sample("mu", dist.Normal(0, 5))
    tau = numpyro.sample("tau", dist.HalfCauchy(5))
    theta_raw = numpyro.sample("theta_raw", dist.Normal(0, 1).expand([J]))
    numpyro.sample("y", dist.Normal(mu + tau * theta_raw, sigma), obs=y)


def constrained_numpyro(k, c, ev):
    p = numpyro.sample("p", dist.Beta(2, 2))
    numpyro.sample("k", dist.Binomial(10, p), obs=k)
    w = numpyro.sample("w", dist.Dirichlet(jnp.array([1.0, 2.0, 3.0])))
    numpyro.sample("c", dist.Categorical(probs=w), obs=c)
    lam = numpyro.sample("lam", dist.Gamma(3, 2))
    numpyro.sample("ev", dist.Poisson(lam), obs=ev)
    lo = numpyro.sample("lo", dist.Normal(0, 1))
    numpyro.sample("u", dist.Uniform(lo, lo + 2))


@pytest.mark.parametrize("text, data, model, args", [
    (EIGHT_SCHOOLS, SCHOOLS, schools_numpyro, lambda d: (8, jnp.asarray(d["y"]), jnp.asarray(d["sigma"]))),
    (CONSTRAINED, CONSTRAINED_DATA, constrained_numpyro, lambda d: tuple(jnp.asarray(d[n]) for n in ("k", "c", "ev"))),
], ids=["eight_schools", "constrained"])
def test_log_joint_equals_numpyro_potential(text, data, model, args):
    prog = compile_text(text)
    joint, arrays, params = log_joint(prog, data)
    with jax.enable_x64(True):
        ours = jax.jit(lambda z: (joint.logdensity(z, arrays, params), joint.constrain(z, arrays, params)))
        theirs = jax.jit(lambda parts: -potential_energy(model, args(data), {}, parts))
        for seed in range(5):
            z = 1.5 * jax.random.normal(jax.random.key(seed), (joint.dim,))
            parts = {b.name: z[b.offset:b.offset + b.size].reshape(b.unconstrained_shape) for b in joint.blocks}
            value, values = ours(z)
            np.testing.assert_allclose(value, theirs(parts), rtol=1e-10, atol=1e-10)
            for node in joint.lowered.stochastic:  # every latent lands in its support
                if node.name in joint.latents:
                    given = {p: values.get(p, arrays.get(p)) for p in node.mechanism.ctx.parents}
                    assert bool(jnp.all(node.mechanism.support({}, given)(values[node.name])))


def joint_dim(text, data) -> int:
    return log_joint(compile_text(text), data)[0].dim


def test_log_joint_of_a_trained_mechanism_uses_its_parameters():
    prog = compile_text("""
model flow_prior {
  data y: real
  z: real[2] ~ pushforward(normal(0, 1), coupling(layers=2, hidden=[8]))
  y ~ normal(z[0] + z[1], 0.5)
}
""")
    assert joint_dim(CONSTRAINED, CONSTRAINED_DATA) == 1 + 2 + 1 + 1 + 1  # the simplex has 2 free coordinates
    with pytest.raises(GenDataError, match="params=fit.params"):
        prog.infer({"y": 1.0})
    params = prog.init(jax.random.key(1))
    params = jax.tree_util.tree_map(lambda p: p + 0.1 * jax.random.normal(jax.random.key(2), p.shape, p.dtype), params)
    joint, arrays, node_params = log_joint(prog, {"y": 1.0}, params)
    flow = prog.lowered({"y": 1.0}).node("z").mechanism
    with jax.enable_x64(True):
        z = jnp.array([0.3, -1.2])
        expected = flow.log_prob(params["z"], z[None], {})[0] + stats.norm.logpdf(1.0, z.sum(), 0.5)
        value = jax.jit(lambda q: joint.logdensity(q, arrays, node_params))(z)
        np.testing.assert_allclose(value, expected, rtol=1e-5)


# -- eight schools: one NUTS run shared by several tests ---------------------------------------------


@pytest.fixture(scope="module")
def schools():
    prog = compile_text(EIGHT_SCHOOLS)
    assert not jax.config.jax_enable_x64
    post = prog.infer(SCHOOLS, key=jax.random.key(3), num_chains=4, num_samples=1000, num_warmup=1000)
    assert not jax.config.jax_enable_x64  # the x64 scope does not leak
    return prog, post


def test_eight_schools_posterior(schools):
    _, post = schools
    s = post.summary()
    for name, (ref, ref_se) in SCHOOLS_REFERENCE.items():
        z = (s[name]["mean"] - ref) / np.hypot(s[name]["mcse_mean"], ref_se)
        assert abs(z) < 4, (name, s[name]["mean"])
    for name in ("mu", "tau", "theta_raw", "theta"):
        assert np.all(np.asarray(s[name]["r_hat"]) < 1.01)
        assert np.all(np.asarray(s[name]["ess_bulk"]) > 800)
    assert int(post.divergences) == 0 and post.divergences == 0
    assert list(post.divergences) == [0, 0, 0, 0] and post.divergences.per_chain.shape == (4,)


def test_eight_schools_draws_and_diagnostics(schools):
    _, post = schools
    assert post.latents == ("mu", "tau", "theta_raw") and post.deterministic == ("theta",)
    assert post.samples["theta_raw"].shape == (4, 1000, 8) and post.samples["mu"].shape == (4, 1000)
    assert post.samples["mu"].dtype == np.float64
    expected = post.samples["mu"][..., None] + post.samples["tau"][..., None] * post.samples["theta_raw"]
    np.testing.assert_allclose(post.samples["theta"], expected, rtol=1e-12, atol=1e-12)
    assert np.all(post.samples["tau"] > 0)
    assert post.step_size.shape == (4,) and np.all(post.step_size > 0)
    assert post.inverse_mass_matrix.shape == (4, 10, 10)  # dense: 10 unconstrained dimensions
    assert post.tree_depth.shape == (4, 1000) and post.tree_depth.min() >= 1
    assert abs(post.acceptance_rate.mean() - 0.95) < 0.04
    table = str(post.summary())
    assert "theta_raw[7]" in table and "ess_bulk" in table and "r_hat" in table
    assert "divergences 0" in post.summary_table()
    assert set(post.summary()["theta"]) >= {"mean", "sd", "ess_bulk", "r_hat"}


def test_new_data_reuses_the_compiled_program(schools, monkeypatch):
    prog, _ = schools
    traced = {"n": 0}
    original = Leaf.log_prob

    def counting(self, params, x, given):
        traced["n"] += 1
        return original(self, params, x, given)

    monkeypatch.setattr(Leaf, "log_prob", counting)
    shifted = {**SCHOOLS, "y": [v + 1.0 for v in SCHOOLS["y"]]}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        post = prog.infer(shifted, key=jax.random.key(4), num_chains=4, num_samples=1000, num_warmup=1000)
    assert traced["n"] == 0 and post.compile_seconds == 0.0
    assert post.summary()["mu"]["mean"] > 4.39  # the data moved up by one


def test_write_posterior_files(schools, tmp_path):
    _, post = schools
    write_posterior(post, tmp_path)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert set(summary["mu"]) >= {"mean", "sd", "ess_bulk", "r_hat"} and len(summary["theta"]["mean"]) == 8
    assert summary["divergences"] == {"total": 0, "per_chain": [0, 0, 0, 0]}
    with np.load(tmp_path / "draws.npz") as draws:
        assert draws["theta_raw"].shape == (4, 1000, 8)
    assert (tmp_path / "trace.png").stat().st_size > 1000
    assert json.loads((tmp_path / "sampler.json").read_text())["num_chains"] == 4


def test_to_arviz(schools, monkeypatch):
    _, post = schools
    idata = post.to_arviz()
    assert idata.posterior["theta"].shape == (4, 1000, 8)
    assert set(idata.sample_stats) >= {"diverging", "tree_depth", "energy", "step_size", "acceptance_rate", "lp"}
    assert idata.log_likelihood["y"].shape == (4, 1000, 8)
    monkeypatch.setitem(sys.modules, "arviz", None)
    with pytest.raises(GenRuntimeError, match="pip install arviz"):
        post.to_arviz()


def test_funnel_non_centred_and_banana_energy():
    """Neal's funnel, non-centred (v ~ N(0, 3^2), x = z exp(v/2)), beside the banana energy
    (b0 ~ N(0, 4), b1 - b0^2/4 ~ N(0, 1)): one posterior, no data."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        post = compile_text(TARGETS).infer({}, key=jax.random.key(0), num_chains=4, num_samples=1500, num_warmup=800)
    v, b, x = post.samples["v"], post.samples["b"], post.samples["x"]
    assert abs(zscore(v, 0.0)) < 4 and abs(zscore(v ** 2, 9.0)) < 4
    assert abs(zscore(x[..., 0], 0.0)) < 4
    assert abs(zscore(np.sign(x[..., 1]), 0.0)) < 4
    y = b[..., 1] - b[..., 0] ** 2 / 4
    assert abs(zscore(b[..., 0] ** 2, 4.0)) < 4 and abs(zscore(b[..., 1], 1.0)) < 4
    assert abs(zscore(y, 0.0)) < 4 and abs(zscore(y ** 2, 1.0)) < 4
    assert int(post.divergences) < 0.005 * v.size  # the banana's curved tails may cost a few
    assert np.all(np.asarray(post.summary()["v"]["r_hat"]) < 1.01)


def test_constraints_and_conjugate_posteriors_with_hmc_in_single_precision():
    prog = compile_text(CONSTRAINED)
    post = prog.infer(CONSTRAINED_DATA, key=jax.random.key(5), num_chains=4, num_samples=1500, num_warmup=500,
                      kernel="hmc", num_integration_steps=8, precision="single", chain_method="sequential")
    assert not jax.config.jax_enable_x64
    s = post.samples
    assert s["p"].dtype == np.float32
    assert np.all((s["p"] > 0) & (s["p"] < 1)) and np.all(s["lam"] > 0)
    assert np.all(s["w"] > 0) and np.allclose(s["w"].sum(-1), 1.0, atol=1e-5)
    assert np.all((s["gap"] > 0) & (s["gap"] < 2))
    k, c, ev = (np.asarray(CONSTRAINED_DATA[n]) for n in ("k", "c", "ev"))
    beta = stats.beta(2 + k.sum(), 2 + (10 - k).sum())
    gamma = stats.gamma(3 + ev.sum(), scale=1 / (2 + len(ev)))
    alpha = np.array([1.0, 2.0, 3.0]) + np.bincount(c, minlength=3)
    dirichlet_mean = alpha / alpha.sum()
    assert abs(zscore(s["p"], beta.mean())) < 4 and abs(zscore((s["p"] - beta.mean()) ** 2, beta.var())) < 4
    assert abs(zscore(s["lam"], gamma.mean())) < 4
    for i in range(3):
        assert abs(zscore(s["w"][..., i], dirichlet_mean[i])) < 4
    assert abs(zscore(s["gap"], 1.0)) < 4 and abs(zscore((s["gap"] - 1.0) ** 2, 1 / 3)) < 4  # U(0, 2)
    assert abs(zscore(s["lo"], 0.0)) < 4
    assert "hmc" in post.kernel and np.all(post.num_steps == 8)


# -- faults ----------------------------------------------------------------------------------------


def test_failed_initialisation_names_the_variable():
    prog = compile_text("""
model bad {
  data y: real
  m ~ normal(0, 1)
  y ~ lognormal(m, 1)
}
""")
    with pytest.raises(GenRuntimeError, match="'y'") as err:
        prog.infer({"y": -1.0}, num_chains=2, init_tries=5)
    assert "finite" in str(err.value) and "'m'" not in str(err.value).split("gradient")[0]


def test_user_errors():
    prog = compile_text(EIGHT_SCHOOLS)
    with pytest.raises(GenDataError, match="'y'"):
        prog.infer({"J": 8, "sigma": SCHOOLS["sigma"]})
    with pytest.raises(GenDataError, match="did you mean 'target_accept'"):
        prog.infer(SCHOOLS, target_acept=0.9)
    with pytest.raises(GenDataError, match="num_samples"):
        prog.infer(SCHOOLS, num_samples=0)
    with pytest.raises(GenDataError, match="precision"):
        prog.infer(SCHOOLS, precision="half")
    with pytest.raises(GenDataError, match="nothing to infer"):
        compile_text("model m {\n  data x: real\n  x ~ normal(0, 1)\n}\n").infer({"x": 0.5})
    discrete = compile_text("model m {\n  data y: real\n  k ~ poisson(3)\n  y ~ normal(k, 1)\n}\n")
    with pytest.raises(GenSemanticError, match="discrete latent"):
        discrete.infer({"y": 1.0})
    with pytest.raises(GenDataError, match="init gives 'nope'"):
        prog.infer(SCHOOLS, init={"nope": 1.0})


def test_init_values(schools):
    prog, _ = schools
    joint, arrays, params = log_joint(prog, SCHOOLS)
    with jax.enable_x64(True):
        z = joint.unconstrain({"mu": 2.0, "tau": 0.5}, jnp.zeros(joint.dim), arrays, params)
        back = jax.jit(lambda q: joint.constrain(q, arrays, params))(z)
    assert float(back["mu"]) == pytest.approx(2.0) and float(back["tau"]) == pytest.approx(0.5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        post = prog.infer(SCHOOLS, key=jax.random.key(9), num_chains=4, num_samples=1000, num_warmup=1000,
                          init={"mu": 2.0, "tau": 0.5})
    assert post.compile_seconds == 0.0 and post.samples["mu"].shape == (4, 1000)
    with pytest.raises(GenDataError, match="outside the support"):
        prog.infer(SCHOOLS, init={"tau": -1.0})


def test_infer_run_writes_the_cli_outputs(tmp_path):
    gen = tmp_path / "normal_mean.gen"
    gen.write_text("model normal_mean {\n  data y: real[3]\n  m ~ normal(0, 10)\n  s ~ half_normal(2)\n"
                   "  y ~ normal(m, s)\n}\n")
    (tmp_path / "data.json").write_text(json.dumps({"y": [1.0, 2.0, 3.0]}))
    post = infer_run(gen, tmp_path / "data.json", tmp_path / "out", chains=2, samples=300, warmup=300, seed=1)
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert set(summary) == {"m", "s", "divergences", "warnings"}
    assert 0.5 < summary["m"]["mean"] < 3.5
    assert post.samples["m"].shape == (2, 300)
    written = {p.name for p in (tmp_path / "out").iterdir()}
    assert written == {"summary.json", "sampler.json", "draws.npz", "posterior.nc", "trace.png"}
