"""The contract every registered mechanism meets, checked by looping over the registry: a new
mechanism (one package plus one line in ``gendsl.registry.MECHANISMS``) is covered for free.

For each mechanism's advisor choices on a real and a token variable: the form checks and
compiles; ``init`` gives a PyTree; ``sample`` draws ``(n, *shape)``; ``log_prob`` gives ``(n,)``
finite values (or, for a likelihood declared unavailable, a clear error); the training loss is a
finite scalar; the plan's row shows the declared likelihood kind.
"""

from __future__ import annotations

import jax
import numpy as np
import pytest

import gendsl
from gendsl.advisor import price
from gendsl.core.types import VarType
from gendsl.registry import MECHANISMS

TYPES = [VarType("real", (2,)), VarType("token", (4,), 3)]
#: the advisor's forms of these are templates to fill in, not right-hand sides (see their notes)
TEMPLATES = {"leaf", "distilled"}


def _cases():
    for name, mechanism in MECHANISMS.items():
        if name in TEMPLATES:
            continue
        for vtype in TYPES:
            for choice in mechanism.choices(vtype):
                yield pytest.param(name, vtype, price(choice, vtype), id=f"{name}:{vtype}:{choice.form[:40]}")


def _data(vtype: VarType, n: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    if vtype.base == "token":
        return rng.integers(0, int(vtype.vocab), size=(n, *vtype.shape)).astype(np.int32)
    return rng.normal(size=(n, *vtype.shape)).astype(np.float32)


def test_every_mechanism_offers_a_choice():
    offered = {name for name, m in MECHANISMS.items() for t in TYPES if m.choices(t)}
    # a prior is a trained run, not a choice; truncated(...) and hmm(...) are fixed distributions written by hand
    # (the advisor offers the leaf a variable already has), their contract is checked in their own tests
    assert offered >= set(MECHANISMS) - {"prior", "truncated", "hmm"}


@pytest.mark.parametrize("name,vtype,choice", list(_cases()))
def test_the_contract(name, vtype, choice):
    prog = gendsl.compile(gendsl.parse(f"model m {{\n  data x: {vtype}\n  x ~ {choice.form}\n}}\n"))
    node = prog.lowered().node("x")
    assert node.mechanism.name == name and node.mechanism.describe()["likelihood"] == choice.likelihood
    params = prog.init(jax.random.key(0))
    draws = prog.sample(params, jax.random.key(1), 5)["x"]
    assert draws.shape == (5, *vtype.shape)
    data = {"x": _data(vtype, 8)}
    if choice.likelihood == "unavailable":
        with pytest.raises(gendsl.GenRuntimeError, match="unavailable|no likelihood"):
            prog.log_prob(params, data)
    else:
        lp = np.asarray(prog.log_prob(params, data))
        assert lp.shape == (8,) and np.all(np.isfinite(lp))
    loss = float(prog.loss(params, data, jax.random.key(2)))
    assert np.isfinite(loss)
