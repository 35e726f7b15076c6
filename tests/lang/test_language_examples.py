"""Every LANGUAGE.md example parses and checks, and its builder twin gives the same model."""

import pytest
from builder_twins import TWINS
from conftest import GOLDEN

import gendsl
from gendsl.compiler.lower import lower

TEXT = (GOLDEN / "good" / "language_examples.gen").read_text()
MODELS = {m.name: m for m in gendsl.parse_all(TEXT, "language_examples.gen")}


def test_all_examples_present():
    assert set(MODELS) == set(TWINS)


@pytest.mark.parametrize("name", sorted(TWINS))
def test_builder_builds_the_same_graph(name):
    text_model, built = MODELS[name], TWINS[name]()
    assert list(text_model.graph.nodes) == list(built.graph.nodes)
    assert set(text_model.graph.edges) == set(built.graph.edges)
    for v in text_model.variables():
        assert v == built[v.name], v.name


@pytest.mark.parametrize("name", sorted(TWINS))
def test_builder_and_text_describe_identically(name):
    a = gendsl.compile(MODELS[name]).describe()
    b = gendsl.compile(TWINS[name]()).describe()
    assert a == b
    assert name in a and "joint: log_prob kind" in a


@pytest.mark.parametrize("name", sorted(TWINS))
def test_examples_lower_through_the_registry(name):
    lowered = lower(MODELS[name], {"J": 8})
    assert all(n.mechanism is not None for n in lowered.nodes if n.var.stochastic)


def test_roles_and_types_of_eight_schools():
    m = MODELS["eight_schools"]
    roles = {v.name: v.role for v in m.variables()}
    assert roles == {"J": "input", "y": "observed", "sigma": "input", "mu": "latent", "tau": "latent",
                     "theta_raw": "latent", "theta": "deterministic"}
    assert str(m["theta"].type) == "real[J]" and str(m["tau"].type) == "positive"
    assert set(m["y"].parents) == {"theta", "sigma", "J"}


def test_load_picks_a_model_by_name(tmp_path):
    path = tmp_path / "m.gen"
    path.write_text(TEXT)
    assert gendsl.load(path).name == "moons_flow"
    assert gendsl.load(path, model="banana").name == "banana"
    with pytest.raises(gendsl.GenError, match="did you mean 'banana'"):
        gendsl.load(path, model="banan")
