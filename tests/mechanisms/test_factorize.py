"""The factorize mechanism: normalisation, sampler vs density, cache, autoregressive structure, fitting."""

from __future__ import annotations

import functools
import itertools
import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from scipy import stats

import gendsl
from gendsl.core.signatures import Spec
from gendsl.core.types import VarType
from gendsl.errors import GenSemanticError
from gendsl.mechanisms.base import NodeContext
from gendsl.mechanisms.factorize import Factorize
from gendsl.registry import MECHANISMS

NETS = {
    "transformer": Spec("transformer", "network", {"layers": 1, "width": 16, "heads": 2, "components": 3}),
    "made": Spec("made", "network", {"hidden": (16, 16), "components": 3, "activation": "silu"}),
    "mlp": Spec("mlp", "network", {"hidden": (16,), "activation": "tanh", "components": 3}),
}
PARENTS = {"c": VarType("token", (1,), 2), "z": VarType("real", (2,))}
GIVEN = {"none": (), "token": ("c",), "real": ("z",)}


@functools.cache  # one instance per configuration: its compiled functions serve every test
def make(vtype: VarType, net: str, given: str = "none", **net_options) -> Factorize:
    spec = NETS[net] if not net_options else Spec(net, "network", {**NETS[net].options, **net_options})
    names = GIVEN[given]
    ctx = NodeContext("x", vtype, Spec("factorize", "mechanism", {"net": spec, "given": names}),
                      {n: PARENTS[n] for n in names}, names)
    return MECHANISMS["factorize"].build(ctx)


def context(given: str, n: int, value: int = 1) -> dict:
    """The same context value repeated ``n`` times."""
    if given == "token":
        return {"c": jnp.full((n, 1), value, jnp.int32)}
    if given == "real":
        return {"z": jnp.tile(jnp.array([[0.5, -1.0 * value]]), (n, 1))}
    return {}


def all_sequences(length: int, vocab: int) -> jax.Array:
    return jnp.array(list(itertools.product(range(vocab), repeat=length)), jnp.int32)


TOKENS = VarType("token", (3,), 3)
SUM_CASES = [(net, given) for net in ("transformer", "made") for given in GIVEN] + [("mlp", "none")]


@pytest.mark.parametrize("net,given", SUM_CASES)
def test_token_probabilities_sum_to_one(net, given):
    mech = make(TOKENS, net, given)
    params = mech.init(jax.random.key(0))
    xs = all_sequences(3, 3)
    lp0, lp1 = (mech.log_prob(params, xs, context(given, len(xs), v)) for v in (0, 1))
    np.testing.assert_allclose([jax.nn.logsumexp(lp0), jax.nn.logsumexp(lp1)], 0.0, atol=1e-5)
    if given != "none":  # the context matters
        assert float(jnp.max(jnp.abs(lp0 - lp1))) > 1e-3


def test_mlp_over_context_for_one_token():
    """`label: token[1] of 4 ~ factorize(mlp(hidden=[32]))`: a categorical that depends on the context."""
    mech = make(VarType("token", (1,), 4), "mlp", "token", hidden=(32,))
    params = mech.init(jax.random.key(3))
    xs = jnp.arange(4)[:, None]
    p0, p1 = (jnp.exp(mech.log_prob(params, xs, context("token", 4, v))) for v in (0, 1))
    np.testing.assert_allclose([p0.sum(), p1.sum()], 1.0, atol=1e-6)
    assert float(jnp.max(jnp.abs(p0 - p1))) > 1e-3
    assert mech.sample(params, jax.random.key(4), 7, context("token", 7)).shape == (7, 1)


@pytest.mark.parametrize("net,given", [("transformer", "token"), ("made", "real")])
def test_token_sampler_frequencies_match_probabilities(net, given):
    mech = make(TOKENS, net, given)
    params = mech.init(jax.random.key(1))
    xs = all_sequences(3, 3)
    probs = np.exp(np.asarray(mech.log_prob(params, xs, context(given, len(xs))), np.float64))
    n = 20_000
    draws = np.asarray(mech.sample(params, jax.random.key(2), n, context(given, n)))
    assert draws.shape == (n, 3) and draws.dtype == np.int32
    counts = np.bincount(draws @ np.array([9, 3, 1]), minlength=27)
    chi2 = stats.chisquare(counts, probs / probs.sum() * n)
    assert chi2.pvalue > 1e-3, chi2


def test_cache_and_no_cache_sampling_agree():
    n = 512
    mech = make(VarType("token", (6,), 3), "transformer", "token", layers=2)
    params = mech.init(jax.random.key(5))
    cached = mech.sample(params, jax.random.key(6), n, context("token", n))
    uncached = mech.sample(params, jax.random.key(6), n, context("token", n), cache=False)
    np.testing.assert_array_equal(cached, uncached)
    assert len(np.unique(np.asarray(cached), axis=0)) > 50  # not a degenerate sampler

    reals = make(VarType("real", (2,)), "transformer", "real")
    params = reals.init(jax.random.key(7))
    cached = reals.sample(params, jax.random.key(8), n, context("real", n))
    uncached = reals.sample(params, jax.random.key(8), n, context("real", n), cache=False)
    np.testing.assert_allclose(cached, uncached, atol=1e-4)


def grid_2d(half_width: float = 12.0, points: int = 481):
    axis = np.linspace(-half_width, half_width, points)
    xx, yy = np.meshgrid(axis, axis, indexing="ij")
    return axis, np.stack([xx.ravel(), yy.ravel()], -1).astype(np.float32)


@pytest.mark.parametrize("net,given", [("made", "none"), ("made", "real"), ("mlp", "token"), ("transformer", "real")])
def test_real_density_integrates_to_one(net, given):
    mech = make(VarType("real", (2,)), net, given)
    params = mech.init(jax.random.key(9))
    axis, pts = grid_2d()
    density = np.exp(np.asarray(mech.log_prob(params, pts, context(given, len(pts))), np.float64))
    total = np.trapezoid(np.trapezoid(density.reshape(len(axis), len(axis)), axis, axis=1), axis)
    assert abs(total - 1.0) < 1e-2


def test_real_sampler_matches_density():
    """x_0 against its CDF (KS test); (x_0, x_1) moments against the density's moments on a grid."""
    mech = make(VarType("real", (2,)), "made")
    params = mech.init(jax.random.key(12))
    n = 20_000
    draws = np.asarray(mech.sample(params, jax.random.key(13), n, {}), np.float64)
    axis, pts = grid_2d()
    log_cond = np.asarray(mech.log_conditionals(params, pts, {}), np.float64)

    first = np.exp(log_cond[:, 0].reshape(len(axis), len(axis))[:, 0])  # p(x_0) does not read x_1
    cdf = np.concatenate([[0.0], np.cumsum((first[1:] + first[:-1]) / 2 * np.diff(axis))])
    assert stats.kstest(draws[:, 0], lambda v: np.interp(v, axis, cdf / cdf[-1])).pvalue > 1e-3

    w = np.exp(log_cond.sum(1))
    w /= w.sum()
    mean = w @ pts
    cov = (pts - mean).T @ ((pts - mean) * w[:, None])
    assert np.all(np.abs(draws.mean(0) - mean) < 5 * np.sqrt(np.diag(cov) / n))
    np.testing.assert_allclose(np.cov(draws.T), cov, rtol=0.1, atol=0.05 * np.trace(cov))


@pytest.mark.parametrize("net", ["made", "transformer"])
def test_real_conditionals_are_autoregressive(net):
    mech = make(VarType("real", (4,)), net, "real")
    params = mech.init(jax.random.key(14))
    x = jax.random.normal(jax.random.key(15), (1, 4))
    jac = jax.jacfwd(lambda v: mech.log_conditionals(params, v, context("real", 1))[0])(x)[:, 0, :]
    jac = np.asarray(jac)
    assert np.all(np.triu(jac, k=1) == 0.0)  # log p(x_t | x_<t) ignores x_>t
    assert np.all(np.abs(np.tril(jac, k=-1)[np.tril_indices(4, -1)]) > 0)  # and reads every x_<t
    assert np.all(np.abs(np.diag(jac)) > 0)


@pytest.mark.parametrize("net", ["transformer", "made"])
def test_token_conditionals_are_autoregressive(net):
    mech = make(VarType("token", (5,), 3), net)
    params = mech.init(jax.random.key(16))
    x = jnp.array([[1, 2, 0, 0, 1]])
    base = mech.log_conditionals(params, x, {})
    for t in range(5):
        changed = mech.log_conditionals(params, x.at[0, t].set((x[0, t] + 1) % 3), {})
        np.testing.assert_array_equal(changed[0, :t], base[0, :t])
        assert abs(float(changed[0, t] - base[0, t])) > 1e-6


def markov_chain(vocab: int, length: int, n: int, seed: int):
    """Sequences from a random first-order chain and the exact entropy per sequence (nats)."""
    rng = np.random.default_rng(seed)
    init, trans = rng.dirichlet(np.ones(vocab)), rng.dirichlet(0.5 * np.ones(vocab), size=vocab)
    xs = np.empty((n, length), np.int32)
    xs[:, 0] = rng.choice(vocab, n, p=init)
    for t in range(1, length):
        cum = np.cumsum(trans[xs[:, t - 1]], axis=1)
        xs[:, t] = np.minimum((rng.random((n, 1)) > cum).sum(1), vocab - 1)
    row_entropy = -np.sum(trans * np.log(trans), axis=1)
    marginal, entropy = init, -np.sum(init * np.log(init))
    for _ in range(1, length):
        entropy += marginal @ row_entropy
        marginal = marginal @ trans
    return xs, entropy


@pytest.mark.slow
@pytest.mark.parametrize("net,options,steps,batch", [
    ("transformer", {"layers": 1, "width": 16, "heads": 2}, 300, 128),
    ("made", {"hidden": (64,)}, 400, 256),
])
def test_fit_markov_chain_reaches_entropy(net, options, steps, batch):
    data, entropy = markov_chain(4, 8, 25_000, seed=0)
    train, test = jnp.asarray(data[:20_000]), jnp.asarray(data[20_000:])
    mech = make(VarType("token", (8,), 4), net, **options)
    params = mech.init(jax.random.key(0))
    opt = optax.adam(3e-3)

    @jax.jit
    def run(params, key):
        def step(carry, key):
            params, state = carry
            rows = train[jax.random.randint(key, (batch,), 0, len(train))]
            loss, grads = jax.value_and_grad(mech.loss)(params, rows, {}, key)
            updates, state = opt.update(grads, state, params)
            return (optax.apply_updates(params, updates), state), loss

        return jax.lax.scan(step, (params, opt.init(params)), jax.random.split(key, steps))

    (params, _), losses = run(params, jax.random.key(1))
    heldout = float(-jnp.mean(mech.log_prob(params, test, {})))
    assert float(losses[-20:].mean()) < float(losses[:20].mean())
    assert abs(heldout - entropy) / entropy < 0.03, (heldout, entropy)


def test_describe_cost_and_compiles_once():
    mech = make.__wrapped__(VarType("token", (5,), 3), "transformer")  # a fresh instance: count its compiles
    assert mech.describe() == {"mechanism": "factorize", "loss": "nll", "likelihood": "exact",
                               "sampler": "inverse-cdf x 5", "cost": "5"}
    assert make(VarType("real", (2, 3)), "made").cost() == 6
    params = mech.init(jax.random.key(0))
    for seed in range(3):
        x = mech.sample(params, jax.random.key(seed), 16, {})
        mech.log_prob(params, x, {})
    assert mech._sample._cache_size() == 1 and mech._log_conditionals._cache_size() == 1


def test_params_are_float_arrays_and_work_on_a_fresh_instance():
    """As after save / load: parameters alone drive a mechanism that never ran ``init``."""
    params = make(TOKENS, "transformer", "token").init(jax.random.key(0))
    assert all(jnp.issubdtype(leaf.dtype, jnp.floating) for leaf in jax.tree_util.tree_leaves(params))
    xs = all_sequences(3, 3)
    fresh = make.__wrapped__(TOKENS, "transformer", "token")
    total = jax.nn.logsumexp(fresh.log_prob(params, xs, context("token", len(xs))))
    np.testing.assert_allclose(total, 0.0, atol=1e-5)


def test_real_shapes_are_flattened_and_restored():
    mech = make(VarType("real", (2, 2)), "made", "token")
    params = mech.init(jax.random.key(0))
    draws = mech.sample(params, jax.random.key(1), 5, context("token", 5))
    assert draws.shape == (5, 2, 2) and draws.dtype == jnp.float32
    assert mech.log_prob(params, draws, context("token", 5)).shape == (5,)


@pytest.mark.parametrize("vtype,net,options,words", [
    (VarType("int", (3,)), "made", {}, "token[N] of V"),
    (VarType("positive", (2,)), "made", {}, "positive"),
])
def test_rejects_what_it_cannot_model(vtype, net, options, words):
    with pytest.raises(GenSemanticError, match=re.escape(words)):
        make(vtype, net, **options)


def test_the_check_rejects_a_transformer_whose_width_does_not_split_into_heads():
    """Option rules are the declaration's: the check applies them, before any node is built."""
    text = "model m {\n  data x: token[4] of 3\n  x ~ factorize(transformer(width=10, heads=4))\n}\n"
    with pytest.raises(GenSemanticError, match="divisible by heads") as info:
        gendsl.parse(text, file="m.gen")
    assert (info.value.line, info.value.column) == (3, 7)
