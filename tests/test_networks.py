"""Networks are used generically: a mechanism that takes a vector network builds whatever the
network table's entry builds, and refuses other kinds by the entry's kind, not by name.

A toy vector network, registered in a copy of the table (and of the language's signatures),
serves evolve, energy, cnf and generator without a line of theirs naming it; every vector network
of the real table does the same; autoregressive networks are refused at check time."""

from __future__ import annotations

import dataclasses
import re

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gendsl
from gendsl import lang
from gendsl.core.catalog import Table
from gendsl.core.signatures import Param, Signature, default_spec
from gendsl.errors import GenSemanticError
from gendsl.mechanisms import base
from gendsl.nn import NETWORKS, Network
from gendsl.registry import CATALOG, SIGNATURES

TOY_SIGNATURE = Signature("toy", "network", (Param("width", "int", 8),), "a two-layer tanh network (tests only)")


class Toy(eqx.Module):
    inner: eqx.nn.Linear
    outer: eqx.nn.Linear

    def __call__(self, x):
        return self.outer(jnp.tanh(self.inner(x)))


def build_toy(spec, in_size, out_size, *, key, zero_last=False, input_gain=None, event_shape=None):
    k1, k2 = jax.random.split(key)
    inner = eqx.nn.Linear(in_size, spec["width"], key=k1)
    outer = eqx.nn.Linear(spec["width"], out_size, key=k2)
    if input_gain is not None:
        inner = eqx.tree_at(lambda l: l.weight, inner, inner.weight * input_gain)
    if zero_last:
        outer = eqx.tree_at(lambda l: (l.weight, l.bias), outer, (jnp.zeros_like(outer.weight),
                                                                  jnp.zeros_like(outer.bias)))
    return Toy(inner, outer)


#: what each mechanism is asked, with NET standing for the network's call
RHS = {
    "evolve": "evolve(flow_matching(), net=NET, sampler=ode(steps=2))",
    "energy": "energy(NET, sampler=mala(step_size=0.01, steps=3, warmup=0))",
    "cnf": "pushforward(normal(0, 1), cnf(net=NET, steps=2))",
    "generator": "pushforward(normal(0, 1), generator(net=NET, critic=NET))",
}


#: the event shapes every vector network is tried on: a vector and a one-channel image
SHAPES = [(3,), (1, 4, 4)]


def body(rhs: str, shape: tuple[int, ...] = (3,)) -> str:
    return f"model m {{\n  data x: real[{', '.join(map(str, shape))}]\n  x ~ {rhs}\n}}\n"


@pytest.fixture
def toy_compile(monkeypatch):
    """Compile a model with the toy network registered (in copies of the tables)."""
    monkeypatch.setattr(base, "NETWORKS", Table("network", {**NETWORKS, "toy": Network(TOY_SIGNATURE, "vector",
                                                                                           build_toy)}))
    catalog = dataclasses.replace(CATALOG, signatures=Table("name", {**SIGNATURES, "toy": TOY_SIGNATURE}))
    return lambda text: gendsl.compile(lang.parse(text, catalog))


def exercise(prog: gendsl.Program, mechanism: str, shape: tuple[int, ...] = (3,)):
    """Init, a loss, draws and (where there is one) a log-density, all of the right shapes."""
    n = 4
    params = prog.init(jax.random.key(0))
    x = jax.random.normal(jax.random.key(1), (n, *shape))
    node = prog.lowered().node("x").mechanism
    assert np.isfinite(float(node.loss(params["x"], x, {}, jax.random.key(2))))
    draws = prog.sample(params, jax.random.key(3), n)["x"]
    assert draws.shape == (n, *shape) and np.all(np.isfinite(draws))
    if mechanism != "generator":
        lp = prog.log_prob(params, {"x": x})
        assert lp.shape == (n,) and np.all(np.isfinite(lp))
    return params


@pytest.mark.parametrize("mechanism", sorted(RHS))
def test_a_registered_toy_vector_network_serves_every_mechanism(toy_compile, mechanism):
    prog = toy_compile(body(RHS[mechanism].replace("NET", "toy(width=6)")))
    params = exercise(prog, mechanism)
    nets = [leaf for leaf in jax.tree_util.tree_leaves(params["x"], is_leaf=lambda v: isinstance(v, Toy))
            if isinstance(leaf, Toy)]
    assert nets and all(net.inner.weight.shape[0] == 6 for net in nets)
    if mechanism == "evolve":
        # the mechanism's initialisation asks the build for a zero output and gains on the inputs
        net = params["x"]["net"]
        assert not np.any(net.outer.weight) and not np.any(net.outer.bias)
        plain = build_toy({"width": 6}, net.inner.weight.shape[1], 3, key=jax.random.key(0))
        gain = np.std(np.asarray(net.inner.weight[:, :3])) / np.std(np.asarray(plain.inner.weight[:, :3]))
        assert gain > 4  # the point's columns: INPUT_GAIN times sqrt(total inputs / point inputs)


#: every mechanism on vectors; evolve and energy on images (cnf and the generator build their
#: networks through the same build_network, and a U-Net inside an ODE solve costs most to compile)
CASES = [(m, s) for s in SHAPES for m in sorted(RHS) if len(s) == 1 or m in ("evolve", "energy")]


@pytest.mark.parametrize("mechanism,shape", CASES)
@pytest.mark.parametrize("network", [n for n, e in NETWORKS.items() if e.kind == "vector"])
def test_every_vector_network_of_the_table_serves_every_mechanism(network, mechanism, shape):
    """Each vector network with its defaults serves the mechanisms on each shape, or its entry
    refuses the shape, and the check says so with the entry's reason."""
    entry = NETWORKS[network]
    why = entry.refuse(default_spec(entry.signature), shape) if entry.refuse is not None else None
    text = body(RHS[mechanism].replace("NET", f"{network}()"), shape)
    if why is not None:
        with pytest.raises(GenSemanticError, match=re.escape(why)):
            gendsl.parse(text)
        return
    exercise(gendsl.compile(gendsl.parse(text)), mechanism, shape)


@pytest.mark.parametrize("rhs", [
    "evolve(flow_matching(), net=made(hidden=[8]))",
    "energy(made(hidden=[8]))",
    "pushforward(normal(0, 1), cnf(net=transformer()))",
    "pushforward(normal(0, 1), generator(critic=made()))",
])
def test_other_kinds_are_refused_by_their_kind_at_check(rhs):
    with pytest.raises(GenSemanticError, match="must be a vector network, such as .*mlp.*; got .*an autoregressive "
                                               "network") as info:
        gendsl.parse(body(rhs), file="m.gen")
    assert (info.value.line, info.value.column) == (3, 7)
