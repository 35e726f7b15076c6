"""The image networks (``unet``, ``conv``): shapes for several images (odd sizes too), a zero
output with ``zero_last``, FiLM conditioning that moves the output, clear refusals of non-image
variables, and a few flow-matching steps on 8x8 digits that lower the loss."""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gendsl
from gendsl.core.signatures import default_spec
from gendsl.data import builtin
from gendsl.errors import GenSemanticError
from gendsl.nn import NETWORKS
from gendsl.nn.layers import Conv2d

IMAGE_NETWORKS = [n for n, e in NETWORKS.items() if e.kind == "vector" and e.refuse is not None]
SMALL = {"unet": {"channels": 4, "mults": (1, 2), "groups": 2, "attention": (2,)},
         "conv": {"channels": (4, 4), "hidden": (8,)}}
FEATURES = 5


def small_net(name: str, shape: tuple[int, ...], out_size: int | None = None, **kwargs):
    entry = NETWORKS[name]
    spec = default_spec(entry.signature)
    spec = type(spec)(spec.name, spec.category, {**spec.options, **SMALL[name]})
    size = math.prod(shape)
    return entry.build(spec, size + FEATURES, size if out_size is None else out_size, key=jax.random.key(0),
                       event_shape=shape, **kwargs), size


def test_every_image_network_has_small_settings_here():
    assert set(IMAGE_NETWORKS) == set(SMALL) and IMAGE_NETWORKS


@pytest.mark.parametrize("name", IMAGE_NETWORKS)
@pytest.mark.parametrize("shape", [(3, 5, 7), (6, 6)])
def test_shapes_for_images_of_any_size(name, shape):
    """The image in (odd sizes too), the image out when the output has its size, else a vector."""
    for out_size in (None, 3):
        net, size = small_net(name, shape, out_size)
        y = eqx.filter_jit(lambda n, v: jax.vmap(n)(v))(net, jax.random.normal(jax.random.key(1), (2, size + FEATURES)))
        assert y.shape == (2, size if out_size is None else out_size) and np.all(np.isfinite(y))


@pytest.mark.parametrize("name", IMAGE_NETWORKS)
def test_zero_last_starts_at_zero_and_the_features_move_the_output(name):
    net, size = small_net(name, (1, 6, 5), zero_last=True)
    x = jax.random.normal(jax.random.key(1), (size + FEATURES,))
    assert not np.any(np.asarray(eqx.filter_jit(net)(x)))
    net, size = small_net(name, (1, 6, 5))
    call = eqx.filter_jit(net)
    other = x.at[size:].set(-x[size:])  # the same image, other conditioning features
    moved = np.abs(np.asarray(call(x) - call(other)))
    assert moved.max() > 1e-3 * np.abs(np.asarray(call(x))).max()


@pytest.mark.parametrize("name", IMAGE_NETWORKS)
@pytest.mark.parametrize("rhs", ["evolve(flow_matching(), net=NET)", "energy(NET)",
                                 "pushforward(normal(0, 1), generator(critic=NET))"])
def test_a_vector_variable_is_refused_naming_it_and_its_shape(name, rhs):
    text = f"model m {{\n  data x: real[12]\n  x ~ {rhs.replace('NET', name + '()')}\n}}\n"
    with pytest.raises(GenSemanticError, match=rf"'x' cannot be {name}\(\.\.\.\) for an event of shape \[12\]: it "
                                               r"reads an image, a variable of type real\[C, H, W\]") as info:
        gendsl.parse(text, file="m.gen")
    assert (info.value.line, info.value.column) == (3, 7)


def test_a_generator_latent_of_its_own_is_no_image():
    text = ("model m {\n  data x: real[1, 4, 4]\n"
            "  x ~ pushforward(normal(0, 1), generator(net=unet(), latent=8))\n}\n")
    with pytest.raises(GenSemanticError, match=r"network of generator\(\) for 'x' cannot be unet\(\.\.\.\) for an "
                                               r"event of shape \[8\]"):
        gendsl.parse(text)


def test_unet_options_out_of_range_are_refused():
    text = "model m {\n  data x: real[1, 4, 4]\n  x ~ evolve(flow_matching(), net=unet(mults=[1, 2], attention=[3]))\n}\n"
    with pytest.raises(GenSemanticError, match=r"attention= names levels 1 to 2"):
        gendsl.parse(text)


def test_a_few_flow_matching_steps_with_a_unet_lower_the_loss_on_digits():
    """Held-out loss (fixed keys, averaged) after 40 steps is below the initial network's (under the
    same fitted standardisation) by far more than its spread over keys."""
    images = builtin("digits", 512, seed=0).arrays["x"].reshape(-1, 1, 8, 8)
    text = ("model m {\n  data x: real[1, 8, 8]\n"
            "  x ~ evolve(flow_matching(), net=unet(channels=8, mults=[1, 2], groups=4), ema=0)\n}\n")
    prog = gendsl.compile(gendsl.parse(text))
    node = prog.lowered().node("x").mechanism
    test = jnp.asarray(images[:128])
    loss = eqx.filter_jit(lambda p, k: node.loss(p, test, {}, k))
    keys = jax.random.split(jax.random.key(5), 8)

    def losses(params):
        return np.array([float(loss(params["x"], k)) for k in keys])

    result = prog.fit({"x": images[128:]}, steps=40, batch_size=64, key=jax.random.key(0), progress=False,
                      optimizer=optax.adam(3e-3))
    after = losses(result.params)
    # the same standardisation (fitted) with the initial network, whose output is zero
    before = losses({"x": {**result.params["x"], "net": prog.init(jax.random.key(0))["x"]["net"]}})
    spread = np.sqrt(before.var(ddof=1) / len(keys) + after.var(ddof=1) / len(keys))
    assert after.mean() < before.mean() - 4 * spread


@pytest.mark.parametrize("kernel, stride, h, w", [(3, 1, 7, 5), (3, 2, 7, 5), (3, 2, 8, 8), (1, 1, 4, 3)])
def test_the_convolution_layer_is_equinox_s_convolution(kernel, stride, h, w):
    mine = Conv2d(3, 4, kernel, stride, key=jax.random.key(0))
    ref = eqx.nn.Conv2d(3, 4, kernel, stride=stride, padding=kernel // 2, key=jax.random.key(1))
    ref = eqx.tree_at(lambda m: (m.weight, m.bias), ref, (mine.weight, mine.bias))
    x = jax.random.normal(jax.random.key(2), (3, h, w))
    np.testing.assert_allclose(mine(x), ref(x), atol=1e-5)
