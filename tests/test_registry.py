"""The registry's tables: names agree with their entries, lookups fail clearly, every mechanism is
complete, and the check runs each mechanism's own option rules (check and compile agree)."""

from __future__ import annotations

import pytest

import gendsl
from gendsl.core.catalog import Table
from gendsl.errors import GenSemanticError
from gendsl.mechanisms import KINDS, AbstractMechanism
from gendsl.registry import (
    ANNEALED_SAMPLERS,
    BIJECTIONS,
    CATALOG,
    DISTRIBUTIONS,
    KERNELS,
    MAPS,
    MECHANISMS,
    NETWORKS,
    OBJECTIVES,
    PROCESSES,
    SAMPLERS,
    SIGNATURES,
    SMC_SAMPLERS,
    TEMPERING_SAMPLERS,
)

TABLES = {"mechanisms": MECHANISMS, "networks": NETWORKS, "bijections": BIJECTIONS, "maps": MAPS,
          "processes": PROCESSES, "samplers": SAMPLERS, "kernels": KERNELS, "smc": SMC_SAMPLERS,
          "annealed": ANNEALED_SAMPLERS, "tempering": TEMPERING_SAMPLERS, "objectives": OBJECTIVES,
          "distributions": DISTRIBUTIONS}


@pytest.mark.parametrize("table", sorted(TABLES))
def test_a_lookup_of_an_unknown_name_lists_the_known_ones(table):
    entries: Table = TABLES[table]
    first = next(iter(entries))
    with pytest.raises(GenSemanticError) as info:
        entries.lookup(first + "x")
    assert f"did you mean '{first}'" in info.value.message
    assert all(name in info.value.message for name in entries)


def test_every_entry_is_named_as_its_signature():
    for name, mechanism in MECHANISMS.items():
        assert mechanism.name == name and issubclass(mechanism, AbstractMechanism)
        assert mechanism.signature is None or mechanism.signature.name == name
        assert mechanism.kind in KINDS and mechanism.bases
    for table in (NETWORKS, BIJECTIONS, DISTRIBUTIONS, KERNELS):
        assert all(entry.signature.name == name for name, entry in table.items())
    for table in (MAPS, SAMPLERS, SMC_SAMPLERS, ANNEALED_SAMPLERS, TEMPERING_SAMPLERS, OBJECTIVES):
        assert all(signature.name == name for name, signature in table.items())


def test_the_language_table_holds_every_registered_name_once():
    expected = (set(DISTRIBUTIONS) | {m for m in MECHANISMS if MECHANISMS[m].signature is not None} | set(NETWORKS)
                | set(MAPS) | set(PROCESSES) | set(SAMPLERS) | set(KERNELS) | set(SMC_SAMPLERS)
                | set(ANNEALED_SAMPLERS) | set(TEMPERING_SAMPLERS) | set(OBJECTIVES))
    assert set(SIGNATURES) == expected and CATALOG.signatures is SIGNATURES


@pytest.mark.parametrize("rhs,words", [
    ("evolve(flow_matching(), net=made(hidden=[64]))", "net=mlp"),
    ("evolve(flow_matching(), ema=1.5)", "ema"),
    ("evolve(vp(), sampler=sde(steps=0))", "steps"),
    ("energy(made(hidden=[8]))", "mlp"),
    ("factorize(transformer(width=10, heads=4))", "divisible by heads"),
])
def test_check_runs_the_mechanism_option_rules(rhs, words):
    """What compile would refuse, check refuses first, at the right-hand side."""
    text = f"model m {{\n  data x: real[2]\n  x ~ {rhs}\n}}\n"
    with pytest.raises(GenSemanticError, match=words) as info:
        gendsl.parse(text, file="m.gen")
    assert (info.value.line, info.value.column) == (3, 7)


NETWORK_SLOTS = [
    "factorize({net})",
    "evolve(flow_matching(), net={net}, sampler=ode(steps=2))",
    "energy({net})",
    "pushforward(normal(0, 1), cnf(net={net}, steps=2))",
    "pushforward(normal(0, 1), generator(net={net}, critic={net}))",
]


@pytest.mark.parametrize("slot", NETWORK_SLOTS)
@pytest.mark.parametrize("network", sorted(NETWORKS))
def test_check_and_compile_agree_on_every_network_in_every_slot(slot, network):
    """Whatever the check accepts compiles and describes itself; what it refuses, it refuses at
    the right-hand side (so check, describe and fit cannot disagree)."""
    text = f"model m {{\n  data x: real[2]\n  x ~ {slot.format(net=network + '()')}\n}}\n"
    try:
        model = gendsl.parse(text, file="m.gen")
    except GenSemanticError as err:
        assert (err.line, err.column) == (3, 7) and network in err.message
        return
    row = gendsl.compile(model).lowered().node("x").mechanism.describe()
    assert row["likelihood"] in KINDS
