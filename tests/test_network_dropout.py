"""Dropout in the U-Net: ``dropout=0`` is the network as before, a rate above 0 changes nothing
at inference (sampling, densities, held-out losses) and draws a fresh mask per example and key in
training (``gendsl.nn.base.training``), and a model with it trains."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

import gendsl
from gendsl.core.signatures import default_spec
from gendsl.data import builtin
from gendsl.nn import NETWORKS
from gendsl.nn.base import training
from gendsl.nn.layers import Dropout

SHAPE, FEATURES = (1, 6, 6), 5


def unet(**options):
    spec = default_spec(NETWORKS["unet"].signature)
    spec = type(spec)(spec.name, spec.category, {**spec.options, "channels": 4, "groups": 2, **options})
    return NETWORKS["unet"].build(spec, 36 + FEATURES, 36, key=jax.random.key(0), event_shape=SHAPE)


def run(net, x):
    return np.asarray(eqx.filter_jit(lambda n, v: jax.vmap(n)(v))(net, x))


def dropouts(net) -> list:
    return [leaf for leaf in jax.tree_util.tree_leaves(net, is_leaf=lambda n: isinstance(n, Dropout))
            if isinstance(leaf, Dropout)]


def test_dropout_zero_is_the_network_without_it_and_training_mode_changes_nothing():
    x = jax.random.normal(jax.random.key(1), (3, 36 + FEATURES))
    plain, zero = unet(), unet(dropout=0.0)
    assert not dropouts(zero)
    assert jax.tree_util.tree_structure(eqx.filter(plain, eqx.is_array)) == \
        jax.tree_util.tree_structure(eqx.filter(zero, eqx.is_array))
    np.testing.assert_array_equal(run(training(zero, jax.random.key(2)), x), run(plain, x))


def test_dropout_is_inert_at_inference_and_random_per_example_and_key_in_training():
    x = jnp.tile(jax.random.normal(jax.random.key(1), (1, 36 + FEATURES)), (4, 1))  # one input, four times
    net = unet(dropout=0.3)
    assert len(dropouts(net)) == 5  # a block per level, two up, one in the middle
    np.testing.assert_array_equal(run(net, x), run(unet(), x))  # same weights, no dropout
    a, b, again = (run(training(net, jax.random.key(k)), x) for k in (2, 3, 2))
    np.testing.assert_array_equal(a, again)
    assert not np.allclose(a, b)
    assert all(not np.allclose(a[0], a[i]) for i in range(1, 4))  # each example its own mask


def test_an_evolve_with_unet_dropout_trains_and_samples_deterministically():
    """Held-out loss (inference mode, fixed keys) after 40 steps below the initial network's by far
    more than its spread over keys; the training objective's network is stochastic; draws repeat
    for a key."""
    images = builtin("digits", 512, seed=0).arrays["x"].reshape(-1, 1, 8, 8)
    text = ("model m {\n  data x: real[1, 8, 8]\n"
            "  x ~ evolve(flow_matching(), net=unet(channels=8, mults=[1, 2], groups=4, dropout=0.2), "
            "sampler=ode(steps=2), ema=0)\n}\n")
    prog = gendsl.compile(gendsl.parse(text))
    node = prog.lowered().node("x").mechanism
    test = jnp.asarray(images[:128])
    loss = eqx.filter_jit(lambda p, k: node.loss(p, test, {}, k))
    keys = jax.random.split(jax.random.key(5), 8)
    result = prog.fit({"x": images[128:]}, steps=40, batch_size=32, key=jax.random.key(0), progress=False,
                      optimizer=optax.adam(3e-3))
    after = np.array([float(loss(result.params["x"], k)) for k in keys])
    initial = {"x": {**result.params["x"], "net": prog.init(jax.random.key(0))["x"]["net"]}}
    before = np.array([float(loss(initial["x"], k)) for k in keys])
    spread = np.sqrt(before.var(ddof=1) / len(keys) + after.var(ddof=1) / len(keys))
    assert after.mean() < before.mean() - 4 * spread
    t, y, c = jnp.full((4,), 0.5), test[:4], None
    net = result.params["x"]["net"]
    denoise = jax.jit(lambda k: jax.vmap(node.model(net, key=k), (0, 0, None))(t, y, c)[0])
    drawn = [np.asarray(denoise(jax.random.key(k))) for k in (8, 9)]
    assert not np.allclose(*drawn)
    one, two = (np.asarray(prog.sample(result.params, jax.random.key(7), 4)["x"]) for _ in range(2))
    np.testing.assert_array_equal(one, two)
    assert np.all(np.isfinite(one))
