"""``true`` and ``false`` are the language's yes/no literals (1 and 0): a bool option takes them,
arithmetic reads them as numbers, and they cannot name a variable."""

import pytest

import gendsl
from gendsl.errors import GenError


@pytest.mark.parametrize("word, value", [("true", True), ("false", False), ("1", True), ('"false"', False)])
def test_a_bool_option_takes_true_and_false(word, value):
    prog = gendsl.compile(gendsl.parse(f"model m {{\n  data x: real[2]\n  x ~ energy(mlp(hidden=[8]), "
                                       f"sampler=annealed(denoise={word}))\n}}"))
    assert prog.plan.node("x").mechanism.annealed.denoise is value


def test_true_and_false_are_one_and_zero_in_expressions():
    model = gendsl.parse("model m {\n  mu ~ normal(0, 1)\n  a = mu * true + false\n}")
    assert gendsl.builder.unparse(model["a"].rhs) == "mu * 1 + 0"


@pytest.mark.parametrize("text, words", [
    ("model m {\n  true ~ normal(0, 1)\n}", "unexpected 'true'"),
    ("model m {\n  data x: real[2]\n  x ~ energy(mlp(hidden=[8]), sampler=annealed(denoise=yes))\n}", "literal bool"),
])
def test_misused_bool_literals_are_errors(text, words):
    with pytest.raises(GenError, match=words):
        gendsl.parse(text)
