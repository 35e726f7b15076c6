"""Bijective pushforwards: log-dets against Jacobians, inverses, normalisation on a grid,
conditional flows, links to positive / unit supports, and the semantics of a variable base."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import pytest

import gendsl
from gendsl.core.signatures import Spec
from gendsl.data import builtin
from gendsl.errors import GenError, GenSemanticError
from gendsl.mechanisms.base import split_module
from gendsl.mechanisms.pushforward.bijections import BIJECTIONS
from gendsl.mechanisms.pushforward.flow import build_flow
from gendsl.mechanisms.pushforward.node import initialise, static_part
from gendsl.numerics.standardise import identity_affine
from gendsl.registry import SIGNATURES

SMALL = {"layers": 2, "hidden": (16,), "bins": 6, "bound": 2.0}


def map_spec(name: str, **options) -> Spec:
    """The resolved ``name(...)`` map with its defaults, small sizes, and ``options``."""
    sig = SIGNATURES[name]
    values = {p.name: p.default for p in sig.params}
    values.update({k: v for k, v in SMALL.items() if k in values})
    values.update(options)
    return Spec(name, "map", values)


@jax.jit
def perturb(params, key):
    """``params`` plus N(0, 0.25^2) noise, drawn at once (one random op to compile, not one per leaf)."""
    leaves, tree = jax.tree_util.tree_flatten(params)
    noise = 0.25 * jax.random.normal(key, (sum(p.size for p in leaves),))
    offsets = np.cumsum([0] + [p.size for p in leaves])
    leaves = [p + noise[a:b].reshape(p.shape) for p, a, b in zip(leaves, offsets[:-1], offsets[1:])]
    return jax.tree_util.tree_unflatten(tree, leaves)


def random_flow(name: str, dim: int, cond_dim: int, seed: int = 0):
    """A flow with every parameter perturbed (so it is far from the identity it starts as)."""
    recipe = (name, map_spec(name), dim, cond_dim)
    params = initialise(build_flow, recipe, jax.random.key(seed))
    return eqx.combine(perturb(params, jax.random.key(seed + 1)), static_part(build_flow, recipe))


def compile_text(body: str) -> gendsl.Program:
    return gendsl.compile(gendsl.parse("model m {\n" + body + "\n}"))


# -- every registered bijection: log-det = log|det Jacobian|, inverse o forward = id ---------------


@pytest.mark.parametrize("name,dim,cond_dim", [*((name, 3, 2) for name in sorted(BIJECTIONS)), ("coupling", 1, 0)])
def test_log_det_matches_jacobian_and_inverse_inverts(name, dim, cond_dim):
    """Every registered bijection (3 elements and a context), and a 1-element coupling flow (its
    conditioner sees no element). In float64, so that sharp random splines invert to 1e-8."""
    key_z, key_c = jax.random.split(jax.random.key(7))
    with jax.enable_x64(True):
        flow = jax.tree_util.tree_map(lambda a: a.astype(jnp.float64) if eqx.is_inexact_array(a) else a,
                                      random_flow(name, dim, cond_dim))
        z = 1.5 * jax.random.normal(key_z, (16, dim), jnp.float64)  # some points outside the spline interval
        context = jax.random.normal(key_c, (16, cond_dim), jnp.float64) if cond_dim else None

        def forward(v, c):
            return flow.transform_and_log_det(v, c)[0]

        def inverse(v, c):
            return flow.inverse_and_log_det(v, c)[0]

        @jax.jit
        def check(z, context):
            x, log_det = jax.vmap(flow.transform_and_log_det)(z, context)
            back, log_det_inv = jax.vmap(flow.inverse_and_log_det)(x, context)
            expected = jnp.linalg.slogdet(jax.vmap(jax.jacfwd(forward))(z, context))[1]
            expected_inv = jnp.linalg.slogdet(jax.vmap(jax.jacfwd(inverse))(x, context))[1]
            return x, back, log_det, log_det_inv, expected, expected_inv

        x, back, log_det, log_det_inv, expected, expected_inv = check(z, context)
    assert x.dtype == jnp.float64
    assert np.max(np.abs(np.asarray(x) - np.asarray(z))) > 0.1  # far from the identity
    np.testing.assert_allclose(back, z, atol=1e-8)
    np.testing.assert_allclose(log_det, expected, atol=1e-8)
    np.testing.assert_allclose(log_det_inv, expected_inv, atol=1e-8)
    np.testing.assert_allclose(log_det_inv, -log_det, atol=1e-8)


# -- trained 2-D flows: normalised densities, samples like the data ----------------------------------

FLOW_MAPS = {
    "coupling": "coupling(layers=4, hidden=[32, 32])",
    "spline": "spline(layers=2, bins=8, hidden=[32, 32])",
    "maf": "maf(layers=3, hidden=[32, 32])",
}
TRAINED = ["coupling", "spline"]  # (maf's log-det and normalisation are checked by the other tests)


@pytest.fixture(scope="module")
def moons():
    return builtin("moons", 4000, seed=0).arrays["x"]


@pytest.mark.parametrize("name", TRAINED)
def test_trained_density_integrates_to_one(name, moons):
    prog = compile_text(f"data x: real[2]\nx ~ pushforward(normal(0, 1), {FLOW_MAPS[name]})")
    fit = prog.fit({"x": moons}, steps=250, key=jax.random.key(1), batch_size=256, progress=False)
    assert fit.losses[-20:].mean() < fit.losses[:20].mean() - 0.3  # it learned something
    lo, hi, m = -6.0, 6.0, 241  # the base's mass outside [-6, 6]^2 is ~4e-9; cells 0.05 wide
    g = np.linspace(lo, hi, m, dtype=np.float32)
    grid = np.stack(np.meshgrid(g, g, indexing="ij"), -1).reshape(-1, 2)
    density = np.exp(np.asarray(prog.log_prob(fit.params, {"x": grid}), np.float64))
    cell = ((hi - lo) / (m - 1)) ** 2
    assert abs(density.sum() * cell - 1.0) < 0.01
    # the density sits on the data: held-out points are far likelier than under the base alone
    heldout = builtin("moons", 2000, seed=1).arrays["x"]
    nll = -float(prog.log_prob(fit.params, {"x": heldout}).mean())
    base_nll = -float(dist.Normal(0, 1).log_prob(heldout).sum(-1).mean())
    assert nll < base_nll - 0.5


def test_describe_rows():
    rows = {}
    for name, text in FLOW_MAPS.items():
        prog = compile_text(f"data x: real[2]\nx ~ pushforward(normal(0, 1), {text})")
        line = [l for l in prog.describe().splitlines() if l.startswith("x ")][0]
        rows[name] = line.split()
    # cost: sequential passes of the whole flow per sample (its layers run in one pass)
    assert rows["coupling"][3:] == ["pushforward(coupling)", "-", "nll", "exact", "flow", "x", "1", "1"]
    assert rows["spline"][-1] == "1"
    assert rows["maf"][-1] == "2" and "autoregressive" in " ".join(rows["maf"])  # one pass per element


# -- conditional flows -------------------------------------------------------------------------------


def test_conditional_flow_puts_each_context_where_its_data_are():
    rng = np.random.default_rng(0)
    n = 3000
    label = rng.integers(0, 3, (n, 1)).astype(np.int32)
    centres = np.array([[-2.5, 0.0], [0.0, 2.5], [2.5, -1.0]], np.float32)
    x = centres[label[:, 0]] + 0.3 * rng.standard_normal((n, 2)).astype(np.float32)
    prog = compile_text("data label: token[1] of 3\ndata x: real[2]\n"
                        "x ~ pushforward(normal(0, 1), spline(layers=2, bins=8, hidden=[32, 32]), given=label)")
    fit = prog.fit({"label": label, "x": x}, steps=400, key=jax.random.key(2), batch_size=256, progress=False)
    m = 1000
    for k in range(3):
        draws = prog.sample(fit.params, jax.random.key(10 + k), m, {"label": np.full((m, 1), k, np.int32)})["x"]
        mean = np.asarray(draws).mean(0)
        assert np.linalg.norm(mean - centres[k]) < 0.3, (k, mean)
        # and the density of each context's data is highest under its own context
        own = prog.log_prob(fit.params, {"label": np.full((100, 1), k, np.int32), "x": x[label[:, 0] == k][:100]})
        other = prog.log_prob(fit.params, {"label": np.full((100, 1), (k + 1) % 3, np.int32),
                                           "x": x[label[:, 0] == k][:100]})
        assert float(own.mean()) > float(other.mean()) + 3.0


# -- supports: positive and unit variables go through numpyro's exp / sigmoid ------------------------


def test_positive_and_unit_variables():
    """At initialisation every flow is the identity, so x = link(z) with z ~ N(0, I) exactly."""
    prog = compile_text("data a: positive[2]\ndata b: unit[2]\n"
                        "a ~ pushforward(normal(0, 1), coupling(layers=2, hidden=[8]))\n"
                        "b ~ pushforward(normal(0, 1), maf(layers=2, hidden=[8]))")
    params = prog.init(jax.random.key(0))
    draws = {k: np.asarray(v) for k, v in prog.sample(params, jax.random.key(1), 500).items()}
    assert np.all(draws["a"] > 0) and np.all((draws["b"] > 0) & (draws["b"] < 1))
    logit_normal = dist.TransformedDistribution(dist.Normal(0.0, 1.0), dist.transforms.SigmoidTransform())
    expected = dist.LogNormal(0.0, 1.0).log_prob(draws["a"]).sum(-1) + logit_normal.log_prob(draws["b"]).sum(-1)
    np.testing.assert_allclose(prog.log_prob(params, draws), expected, rtol=1e-4, atol=1e-4)


# -- a variable as the base --------------------------------------------------------------------------


def test_variable_base_is_a_reparametrisation():
    spline = "spline(layers=2, bins=6, hidden=[16], bound=2)"  # the structure of random_flow's
    composed = compile_text(f"z: real[2] ~ normal(0, 1)\nx ~ pushforward(z, {spline})")
    direct = compile_text(f"data x: real[2]\nx ~ pushforward(normal(0, 1), {spline})")
    flow = random_flow("spline", 2, 0, seed=3)
    params = {"z": {}, "x": {"flow": split_module(flow)[0], **identity_affine((2,))}}
    draws = composed.sample(params, jax.random.key(4), 400)
    expected_x = jax.jit(jax.vmap(flow.transform_and_log_det))(draws["z"])[0]
    np.testing.assert_allclose(draws["x"], expected_x, atol=1e-5)
    # joint density of consistent pairs = density of x under the flow with the base's law
    joint = composed.log_prob(params, draws)
    marginal = direct.log_prob({"x": params["x"]}, {"x": draws["x"]})
    np.testing.assert_allclose(joint, marginal, rtol=1e-4, atol=1e-4)
    # pairs off the graph of T have no density
    off = composed.log_prob(params, {"z": draws["z"] + 0.5, "x": draws["x"]})
    assert np.all(np.isneginf(np.asarray(off)))
    # and there is nothing to fit T by
    with pytest.raises(GenSemanticError, match="no density to fit"):
        composed.fit({"z": draws["z"], "x": draws["x"]}, steps=2, progress=False)


def test_discrete_base_is_refused():
    with pytest.raises(GenError, match="continuous distribution"):
        compile_text("data x: real[2]\nx ~ pushforward(poisson(3), coupling())").init(jax.random.key(0))


# -- the density pass multiplies by the affine scale (issue 13) ------------------------------------


def test_affine_density_pass_does_not_amplify_at_the_scale_floor():
    """With the conditioner at the 0.01 scale floor, the data -> latent pass of the affine coupling
    transformer and of a MAF layer shrinks its input (``z = x * scale + shift``) instead of
    multiplying it by 100 per layer, which compounded into log-densities of -1e14 off the data."""
    from gendsl.mechanisms.pushforward.coupling import AffineTransformer
    from gendsl.mechanisms.pushforward.maf import MaskedAffine

    v = jnp.array([3.0, -2.0])
    theta = jnp.array([[0.5, -50.0], [-0.5, -50.0]])  # shift, raw: scale at the floor
    u, log_d = AffineTransformer().inverse(v, theta)
    assert jnp.all(jnp.abs(u) <= jnp.abs(v) * 0.011 + 0.5 + 1e-6) and jnp.all(log_d < 0)
    back, _ = AffineTransformer().forward(u, theta)
    np.testing.assert_allclose(back, v, rtol=1e-5)

    layer = MaskedAffine(2, 0, (8,), key=jax.random.key(0))
    bias = layer.made.layers[-1].bias
    layer = eqx.tree_at(lambda l: l.made.layers[-1].bias, layer, bias.at[:].set(-50.0))  # raw scale -50, shift -50
    z, _ = layer.inverse_and_log_det(v)
    assert jnp.all(jnp.abs(z - (-50.0)) <= 0.011 * jnp.abs(v) + 1e-4)
