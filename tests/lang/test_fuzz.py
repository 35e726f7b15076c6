"""Property-based robustness of the text front end (hypothesis, derandomized).

Files are generated from the grammar (random valid models over every distribution, mechanism
and option of :mod:`gendsl.core.signatures`) and mutated (tokens and characters deleted, swapped,
duplicated and inserted; random and non-UTF-8 bytes; CRLF, tabs, long lines), and hand-built
extremes are tried (deep nesting, huge numbers and dimensions). The property: ``gendsl.parse``
/ ``gendsl.load`` succeed or raise a :class:`gendsl.GenError` at a line and column inside the
file, rendered ``FILE:LINE:COL: error: ...``; never any other exception; ``gendsl check`` exits
1 with that message and no traceback. Valid generated models compile and describe themselves.
"""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import jax
import numpy as np
import pytest
from conftest import GOLDEN
from fuzz_strategies import models, mutate
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

import gendsl
from gendsl.cli import main
from gendsl.lang.parser import MAX_DIMENSION, MAX_NESTING
from gendsl.registry import MECHANISMS

# derandomized: the same examples on every run; no shrinking (it can take minutes on these inputs),
# so a failure shows the generated file as it was drawn
FUZZ = settings(derandomize=True, database=None, deadline=None, max_examples=150,
                suppress_health_check=list(HealthCheck), phases=[Phase.explicit, Phase.generate])
FILE = "fuzz.gen"
EXAMPLES = (GOLDEN / "good" / "language_examples.gen").read_text()
BAD = [p.read_text() for p in sorted((GOLDEN / "bad").glob("*.gen")) if p.stem != "not_utf8"]


# --------------------------------------------------------------------------- the property


def assert_clean_error(err: gendsl.GenError, text: str | None, file: str = FILE) -> None:
    """Every diagnostic of ``err`` has a line and column inside ``text`` and renders FILE:LINE:COL."""
    lines = text.split("\n") if text is not None else None
    for e in [err, *err.notes]:
        assert isinstance(e, gendsl.GenError)
        assert isinstance(e.line, int) and e.line >= 1, e.render_one()
        assert isinstance(e.column, int) and e.column >= 1, e.render_one()
        if lines is not None:
            assert e.line <= len(lines), e.render_one()
            assert e.column <= len(lines[e.line - 1]) + 1, e.render_one()
        assert e.render_one().startswith(f"{file}:{e.line}:{e.column}: error: ")
        assert "Traceback" not in e.render_one()


def parse_clean(text: str) -> list | None:
    """The models of ``text``, or None after checking the error is a clean GenError."""
    try:
        return gendsl.parse_all(text, FILE)
    except gendsl.GenError as err:
        assert_clean_error(err, text)
        return None


def check_cli(path: Path) -> tuple[int, str]:
    """Run ``gendsl check PATH``; return the exit code and stderr."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["check", str(path)])
    return code, err.getvalue()


def assert_cli_rejects(path: Path) -> None:
    code, err = check_cli(path)
    assert code == 1, err
    assert "Traceback" not in err and "internal error" not in err, err
    assert re.match(rf"{re.escape(str(path))}:\d+:\d+: error: ", err), err


def load_clean(path: Path, raw: bytes) -> None:
    """``gendsl.load`` of the bytes ``raw`` succeeds or fails cleanly, and then so does the CLI."""
    path.write_bytes(raw)
    try:
        gendsl.load(path)
    except gendsl.GenError as err:
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            text = None
        assert_clean_error(err, text, str(path))
        assert_cli_rejects(path)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


seeds = st.one_of(st.sampled_from([EXAMPLES, *BAD]), models().map(lambda m: m[0]))


# --------------------------------------------------------------------------- tests


@settings(FUZZ, max_examples=100)
@given(models())
def test_generated_models_parse_and_check(model):
    text, _ = model
    parsed = gendsl.parse_all(text, FILE)
    assert len(parsed) == 1 and parsed[0].variables()


@settings(FUZZ, max_examples=40)
@given(models(mechanisms=tuple(sorted(set(MECHANISMS) - {"pushforward"})), max_statements=5))
def test_generated_models_compile_when_their_mechanisms_exist(model):
    # pushforward is left out only for time: building its networks takes seconds per model
    text, used = model
    prog = gendsl.compile(gendsl.parse(text, file=FILE))
    plan = prog.describe()
    assert "joint: log_prob kind" in plan
    for v in prog.model.variables():
        assert v.name in plan


@FUZZ
@given(seeds.flatmap(mutate))
def test_mutated_files_parse_or_fail_cleanly(text):
    parse_clean(text)


@settings(FUZZ, max_examples=60)
@given(seeds.flatmap(mutate))
def test_mutated_files_through_the_cli(workdir, text):
    path = workdir / "mutant.gen"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    if parse_clean(text) is None:
        assert_cli_rejects(path)


@FUZZ
@given(seeds, st.data())
def test_random_bytes_load_or_fail_cleanly(workdir, text, data):
    raw = bytearray(text.encode("utf-8", errors="surrogatepass"))
    for _ in range(data.draw(st.integers(1, 3))):
        k = data.draw(st.integers(0, len(raw)))
        chunk = data.draw(st.one_of(st.binary(min_size=1, max_size=6),
                                    st.sampled_from([b"\xff", b"\xc3", b"\xc3\x28", b"\xed\xa0\x80", b"\x00",
                                                     b"\xef\xbb\xbf", b"\r", b"\x80abc"])))
        raw[k:k] = chunk
    load_clean(workdir / "bytes.gen", bytes(raw))


@settings(FUZZ, max_examples=25)
@given(st.binary(max_size=200))
def test_pure_noise_is_rejected_cleanly(workdir, raw):
    load_clean(workdir / "noise.gen", raw)


def _shape(models_) -> list:
    return [(m.name, [(v.name, v.role, str(v.type), v.parents) for v in m.variables()]) for m in models_]


@settings(FUZZ, max_examples=30)
@given(seeds.filter(lambda t: parse_clean(t) is not None), st.sampled_from(["crlf", "tabs", "long_line",
                                                                              "long_comment", "spaces", "bom"]))
def test_layout_does_not_change_the_model(text, layout):
    """CRLF endings, tabs, one-line models, huge comments and blank space mean the same model."""
    if layout == "crlf":
        other = text.replace("\n", "\r\n")
    elif layout == "tabs":
        other = text.replace("  ", "\t")
    elif layout == "long_line":
        # one line: statements joined by "; " (comments dropped first: one would hide the rest of the line)
        other = re.sub(r"\n\s*(?=[^\s}])", "; ", re.sub(r"#[^\n]*", "", text)).replace("{;", "{")
    elif layout == "long_comment":
        other = text.replace("\n", "  # " + "x" * 20000 + "\n", 1)
    elif layout == "spaces":
        other = text.replace(" ~ ", " " * 5000 + "~" + " " * 5000)
    else:
        other = "\ufeff" + text
    assert _shape(gendsl.parse_all(other, FILE)) == _shape(gendsl.parse_all(text, FILE))


# --------------------------------------------------------------------------- hand-built extremes


def _model(stmt: str) -> str:
    return f"model m {{\n  a ~ normal(0, 1)\n  v: real[2] ~ normal(0, 1)\n  {stmt}\n  y ~ normal(w, 1)\n}}\n"


NESTED = {
    "neg": lambda n: "-" * n + "a",
    "sum": lambda n: " + ".join(["a"] * (n + 1)),
    "pow": lambda n: "^".join(["1"] * n + ["a"]),
    "call": lambda n: "tanh(" * n + "a" + ")" * n,
    "list": lambda n: "sum(" + "[" * (n - 1) + "a" + "]" * (n - 1) + ")",
    "index": lambda n: "v[" * n + "0" + "]" * n,
}


def test_nesting_up_to_the_limit_runs_end_to_end():
    """At the limit every form parses, checks, compiles, samples and scores (no RecursionError)."""
    forms = sorted(set(NESTED) - {"index"})  # XLA takes minutes to compile 200 nested gathers
    lets = "\n  ".join(f"w_{f} = {NESTED[f](MAX_NESTING)}" for f in forms)
    text = _model(f"{lets}\n  w = {' + '.join(f'w_{f}' for f in forms)}")
    prog = gendsl.compile(gendsl.parse(text, file=FILE))
    params = prog.init(jax.random.key(0))
    draws = prog.sample(params, jax.random.key(1), 2)
    for f in forms:
        assert np.asarray(draws[f"w_{f}"]).shape == (2,)
    observed = {k: np.asarray(draws[k]) for k in ("a", "v", "y")}
    assert np.all(np.isfinite(np.asarray(prog.log_prob(params, observed))))
    deep_index = gendsl.compile(gendsl.parse(_model(f"w = {NESTED['index'](MAX_NESTING)}"), file=FILE))
    assert "w" in deep_index.describe()


@pytest.mark.parametrize("form", sorted(NESTED))
@pytest.mark.parametrize("depth", [MAX_NESTING + 1, 3000])
def test_nesting_past_the_limit_is_a_syntax_error_where_it_starts(form, depth, workdir):
    text = _model(f"w = {NESTED[form](depth)}")
    with pytest.raises(gendsl.GenSyntaxError, match="nested too deeply") as info:
        gendsl.parse(text, file=FILE)
    assert_clean_error(info.value, text)
    assert info.value.line == 4
    path = workdir / "deep.gen"
    path.write_text(text)
    assert_cli_rejects(path)


def test_deep_nesting_error_points_at_the_first_level_too_deep():
    text = _model("w = " + "-" * 1000 + "a")
    with pytest.raises(gendsl.GenSyntaxError) as info:
        gendsl.parse(text, file=FILE)
    assert (info.value.line, info.value.column) == (4, len("  w = ") + MAX_NESTING + 1)


def test_parentheses_alone_do_not_nest():
    text = _model("w = " + "(" * 500 + "a" + ")" * 500)
    assert gendsl.parse(text, file=FILE)["w"].role == "deterministic"


EXTREMES = {  # body of a model, message, the text the error points at
    "float_overflow": ("y ~ normal(1e999, 1)", "number 1e999 is too large", "1e999"),
    "int_5000_digits": ("y ~ normal(" + "9" * 5000 + ", 1)", "is too large", "9"),
    "int_overflows_float": ("y ~ normal(" + "9" * 309 + ", 1)", "is too large", "9"),
    "huge_dimension": (f"data y: real[{10**40}]", "dimension 1000000000000000000", "1000"),
    "dimension_past_int32": (f"data y: real[{MAX_DIMENSION + 1}]", "too large", "2147"),
    "huge_vocabulary": (f"data y: token[2] of {10**30}", "too large", "1000"),
    "huge_option": ("data y: real[2]\n  y ~ factorize(made(hidden=[" + "9" * 30 + "]))", "too large", "[9"),
    "huge_int_in_expression": ("y ~ normal(3000000000, 1)", "too large for integer arithmetic", "3000"),
    "string_as_number": ('y ~ normal("0", 1)', "a string cannot be used as a number", '"0"'),
    "empty_list": ("y ~ normal([], 1)", "empty list", "[]"),
    "nul_byte": ("y ~ normal(0,\x001)", "U+0000", "\x00"),
    "lone_carriage_return": ("y ~ normal(0, 1)\r z ~ normal(0, 1)", "carriage return", "\r"),
    "index_out_of_range": ("v: real[2] ~ normal(0, 1)\n  y = v[2]", "out of range", "2]\n}"),
    "negative_index_out_of_range": ("v: real[2] ~ normal(0, 1)\n  y = v[-3]", "out of range", "-3"),
    "float_index": ("v: real[2] ~ normal(0, 1)\n  y = v[0.5]", "index must be an integer", "0.5"),
    "categorical_scalar": ("y ~ categorical(0.5)", "needs a vector", "categorical"),
    "dirichlet_scalar": ("y ~ dirichlet(2)", "needs a vector", "dirichlet"),
}


@pytest.mark.parametrize("name", sorted(EXTREMES))
def test_extreme_inputs_are_clean_errors(name):
    body, message, at = EXTREMES[name]
    text = f"model m {{\n  {body}\n}}\n"
    with pytest.raises(gendsl.GenError, match=re.escape(message)) as info:
        gendsl.parse(text, file=FILE)
    assert_clean_error(info.value, text)
    pos = text.index(at)
    assert (info.value.line, info.value.column) == (text.count("\n", 0, pos) + 1, pos - text.rfind("\n", 0, pos))


def test_tiny_and_long_numbers_are_fine():
    text = "model m {\n  y ~ normal(1e-999, " + "0" * 400 + "1." + "5" * 1000 + ")\n}\n"
    scale = gendsl.parse(text)["y"].spec["scale"]
    assert gendsl.parse(text)["y"].spec["loc"].value == 0.0 and 1.5 <= scale.value < 1.6


def test_a_very_long_line_renders_a_window_around_the_caret():
    text = "model m {\n  y ~ normal(0, 1)" + " " * 100000 + "@\n}\n"
    with pytest.raises(gendsl.GenSyntaxError) as info:
        gendsl.parse(text, file=FILE)
    shown = info.value.render().splitlines()
    assert shown[0] == f"{FILE}:2:{100019}: error: unexpected character '@'"
    assert len(shown[1]) < 200 and shown[1].index("@") == shown[2].index("^")


def test_control_characters_are_not_echoed_to_the_terminal():
    text = 'model m {\n  y ~ normal("\x1b]0;pwned\x07", 1)\n}\n'
    with pytest.raises(gendsl.GenError) as info:
        gendsl.parse(text, file=FILE)
    rendered = info.value.render()
    assert "\x1b" not in rendered and "\x07" not in rendered


def test_line_numbers_count_only_newlines():
    """Form feeds and vertical tabs inside a line do not shift the line shown under an error."""
    text = "model m {\n  \x0c y ~ normal(0, 1) @\n}\n"
    with pytest.raises(gendsl.GenSyntaxError) as info:
        gendsl.parse(text, file=FILE)
    assert info.value.line == 2 and "y ~ normal(0, 1) @" in info.value.render()


def test_bytes_that_are_not_utf8_name_their_line_and_column(workdir):
    path = workdir / "latin1.gen"
    raw = "model m {\n  y ~ normal(0, 1)  # café\n}\n".encode("latin-1")
    path.write_bytes(raw)
    with pytest.raises(gendsl.GenSyntaxError, match="not valid UTF-8") as info:
        gendsl.load(path)
    assert (info.value.line, info.value.column) == (2, len("  y ~ normal(0, 1)  # caf") + 1)
    assert_cli_rejects(path)


def test_a_path_with_a_nul_byte_is_a_clean_error():
    with pytest.raises(gendsl.GenError, match="cannot read"):
        gendsl.load("model\x00.gen")
