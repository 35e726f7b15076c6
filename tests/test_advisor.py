"""The mechanism advisor: declared choices per variable type, filtered by needs, with reasons."""

import subprocess
import sys

import pytest

import gendsl
from gendsl.advisor import NEEDS, advise, price, render
from gendsl.cli import main
from gendsl.core.types import VarType
from gendsl.mechanisms import KINDS
from gendsl.registry import MECHANISMS

MIXED = """\
model mixed {
  data label: token[1] of 4
  data s: token[6] of 5
  data x: real[2]
  data y: real[3]
  label ~ factorize(mlp(hidden=[16]))
  s ~ factorize(transformer(layers=1, width=16, heads=2), given=label)
  x ~ pushforward(normal(0, 1), coupling(layers=2, hidden=[16]))
  y ~ evolve(flow_matching(), net=mlp(hidden=[16]), sampler=ode(steps=8), given=label)
}
"""


@pytest.fixture(scope="module")
def mixed():
    return gendsl.parse(MIXED)


def _by_node(verdicts, node):
    return {v.choice.form: v for v in verdicts if v.node == node}


def _one(verdicts, node, start):
    """The verdict of ``node`` whose form starts with ``start`` (exactly one)."""
    found = [v for form, v in _by_node(verdicts, node).items() if form.startswith(start)]
    assert len(found) == 1, (node, start, [v.choice.form for v in found])
    return found[0]


FLOW = "pushforward(normal(0, 1), "


def test_exact_likelihood_in_one_evaluation_admits_one_pass_flows_only(mixed):
    verdicts = advise(mixed, need="exact-likelihood", max_nfe=1)
    for word in ("coupling(", "spline("):
        v = _one(verdicts, "x", FLOW + word)
        assert v.ok and v.choice.likelihood == "exact" and v.choice.nfe == 1, v
    maf = _one(verdicts, "x", FLOW + "maf(")
    assert not maf.ok and maf.reasons == ("2 network evaluations per sample > 1",)
    ode = _one(verdicts, "x", "evolve(flow_matching()")
    assert not ode.ok and ode.choice.nfe == 32 * 2  # 32 heun steps, two stages each
    assert ode.reasons == ("likelihood is estimate, exact-likelihood needs exact",
                           "64 network evaluations per sample > 1")
    sde = _one(verdicts, "x", "evolve(vp()")
    assert not sde.ok and "likelihood is estimate" in sde.reasons[0]
    for v in _by_node(verdicts, "x").values():
        if v.choice.form.startswith("energy("):
            assert not v.ok and v.reasons[0] == "likelihood is unnormalized, exact-likelihood needs exact"
            assert any("network evaluations per sample > 1" in r for r in v.reasons)
    gan = _one(verdicts, "x", FLOW + "generator(")
    assert gan.reasons == ("likelihood is unavailable, exact-likelihood needs exact",)  # 1 nfe is fine
    # tokens: one categorical per token; a one-token variable is a single pass
    assert _one(verdicts, "label", "factorize(made(").ok
    assert not _one(verdicts, "s", "factorize(made(").ok
    assert _one(verdicts, "s", "factorize(transformer(").reasons == ("6 network evaluations per sample > 1",)


def test_types_decide_which_choices_exist(mixed):
    verdicts = advise(mixed)
    label, s, x = (_by_node(verdicts, n) for n in ("label", "s", "x"))
    assert not any("transformer" in f for f in label)  # one token: no sequence
    assert any("transformer" in f for f in s)
    for forms in (label, s):
        assert not any(f.startswith(("pushforward", "evolve", "energy")) for f in forms)
    assert not any("transformer" in f for f in x)  # a transformer only for token sequences
    assert {f.split("(")[0] for f in x} >= {"pushforward", "evolve", "energy", "factorize"}
    positive = [c.form for cls in MECHANISMS.values() for c in cls.choices(VarType("positive", (3,)))]
    assert any("coupling" in f for f in positive) and not any(f.startswith(("evolve", "factorize")) for f in positive)
    ints = [c for cls in MECHANISMS.values() for c in cls.choices(VarType("int", (2,)))]
    assert [c.form for c in ints] == ["poisson(rate)"] and not ints[0].learned


def test_sampling_in_one_evaluation_admits_the_generator_and_a_one_step_distillation(mixed):
    verdicts = advise(mixed, need="sampling", max_nfe=1)
    ok = {v.choice.form for v in verdicts if v.node == "x" and v.ok}
    assert any("generator(" in f for f in ok)
    assert "evolve(...) distilled to 1 step" in ok
    assert not any(f.startswith(("energy", "evolve(flow")) for f in ok)
    assert not any("maf(" in f or "cnf(" in f for f in ok)


def test_conditional_variables_get_given_and_exclude_what_cannot_take_it(mixed):
    verdicts = advise(mixed, need="sampling")
    y = _by_node(verdicts, "y")
    leaf = y["normal(loc, scale)"]
    assert not leaf.ok and "cannot take given= (this variable is conditional)" in leaf.reasons
    for v in y.values():
        if "distilled" in v.form:
            assert v.form == f"{v.choice.form} (given=label)"
        elif v.choice.conditional:
            assert v.form.endswith(", given=label)"), v.form
            gendsl.parse(f"model m {{\n  data label: token[1] of 4\n  y: real[3] ~ {v.form}\n}}\n")  # it is valid
    # x is unconditional: nothing is excluded for conditioning, the forms carry no given=
    assert not any("given" in r for v in _by_node(verdicts, "x").values() for r in v.reasons)
    assert not any("given=" in v.form for v in _by_node(verdicts, "x").values())


def test_a_fixed_leaf_is_a_choice_only_for_a_variable_that_is_not_learned():
    model = gendsl.parse("model m {\n  data y: real[2]\n  mu ~ normal(0, 1)\n  y ~ normal(mu, 1)\n}\n")
    verdicts = advise(model, need="exact-likelihood", max_nfe=0)
    ok = [(v.node, v.choice.form) for v in verdicts if v.ok]
    assert ok == [("mu", "normal(loc, scale)"), ("y", "normal(loc, scale)")]


def test_unknown_need_is_a_clear_error(mixed, tmp_path, capsys):
    with pytest.raises(gendsl.GenError, match="unknown need 'fast'.*exact-likelihood, likelihood, any-likelihood"):
        advise(mixed, need="fast")
    path = tmp_path / "mixed.gen"
    path.write_text(MIXED)
    assert main(["advise", str(path), "--need", "fast"]) == 1
    err = capsys.readouterr().err
    assert "error: unknown need 'fast'" in err and "Traceback" not in err


def test_dimensions_size_the_costs():
    model = gendsl.parse("model m {\n  data J: int\n  data x: real[J]\n  x ~ factorize(made(hidden=[8]))\n}\n")
    made = [v for v in advise(model, dims={"J": 5}) if "made(" in v.form]
    assert made[0].choice.nfe == 5
    verdicts = advise(model)
    assert [v for v in verdicts if "made(" in v.form][0].choice.nfe == 1
    assert "sizes use J = 1" in render(verdicts, "sampling", None, model=model)


def test_cli_report(tmp_path, capsys):
    path = tmp_path / "mixed.gen"
    path.write_text(MIXED)
    assert main(["advise", str(path), "--need", "exact-likelihood", "--max-nfe", "1"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("needs: exact-likelihood (likelihood exact), at most 1 network evaluation per sample")
    assert "x: real[2] (observed; now pushforward)" in out
    assert "y: real[3] (observed; now evolve, given label)" in out
    assert "  ok  pushforward(normal(0, 1), coupling(layers=8, hidden=[64, 64]))" in out
    assert "  ok  pushforward(normal(0, 1), spline(layers=4, bins=8, hidden=[64, 64]), given=label)" in out
    assert ("  no  evolve(flow_matching(), net=mlp(hidden=[128, 128]), sampler=ode(steps=32))  [estimate, 64 nfe]: "
            "likelihood is estimate, exact-likelihood needs exact; 64 network evaluations per sample > 1") in out


def test_cli_through_the_console_entry_point(tmp_path):
    path = tmp_path / "mixed.gen"
    path.write_text(MIXED)
    done = subprocess.run([sys.executable, "-m", "gendsl.cli", "advise", str(path), "--need", "sampling",
                           "--max-nfe", "1"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "ok  pushforward(normal(0, 1), generator(" in done.stdout


# -- the declared properties are those of the lowered node: one cost model -----------------------

TYPES = [VarType("real", (2,)), VarType("real"), VarType("positive", (3,)), VarType("unit", (2,)),
         VarType("token", (1,), 4), VarType("token", (5,), 3)]


@pytest.mark.parametrize("vtype", TYPES, ids=str)
def test_every_choice_compiles_with_the_kind_and_cost_it_declares(vtype):
    seen = 0
    for name, cls in MECHANISMS.items():
        for choice in map(lambda c: price(c, vtype), cls.choices(vtype)):
            assert choice.likelihood in KINDS and choice.nfe >= 0
            if name in ("leaf", "distilled"):  # illustrative forms (arguments to fill in, a CLI step)
                continue
            variants = [""] + ([", given=c"] if choice.conditional else [])
            for given in variants:
                text = (f"model m {{\n  data c: token[1] of 3\n  data x: {vtype}\n"
                        f"  x ~ {choice.form[:-1]}{given})\n}}\n")
                row = gendsl.compile(gendsl.parse(text)).lowered().node("x").mechanism.describe()
                assert (row["likelihood"], row["cost"]) == (choice.likelihood, str(choice.nfe)), (choice.form, given)
            seen += 1
    assert seen > 0


def test_needs_are_ordered_from_strict_to_loose():
    kinds = [set(NEEDS[n]) for n in ("exact-likelihood", "likelihood", "any-likelihood", "sampling")]
    assert all(a < b for a, b in zip(kinds, kinds[1:]))
