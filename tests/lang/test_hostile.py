"""A ``.gen`` file never runs code: hostile files are rejected with a GenError or are harmless.

Each file below tries to reach Python (``__import__``, ``eval``, ``exec``, ``open``, ``os.system``,
attribute access, dunders, code in strings, shell syntax, paths that leave the folder, very deep
nesting). While it is parsed, checked, compiled and run, ``eval`` / ``exec`` / ``os.system`` /
``subprocess`` / unpickling / writing files are traps that fail the test, no module the file
names is imported, and the marker file the payloads would create never appears. A last test
reads the package source: no ``eval(``, ``exec(``, ``__import__``, pickle or ``allow_pickle=True``.
"""

from __future__ import annotations

import ast
import builtins
import contextlib
import io
import os
import pickle
import re
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

import gendsl
from gendsl.cli import main
from gendsl.errors import GenSemanticError
from gendsl.lang.parser import _parser

MARKER = "PWNED_MARKER"
PAYLOADS = [
    f"__import__('os').system('touch {MARKER}')",
    f"open('{MARKER}', 'w').write('x')",
    f"__import__('pathlib').Path('{MARKER}').touch()",
]

#: model bodies that must be rejected (with the text the error must mention)
REJECTED = {
    "import_call": (f'x = __import__("os").system("touch {MARKER}")', "unexpected character '.'"),
    "eval_as_distribution": (f'x ~ eval("{PAYLOADS[0]}")', "unknown distribution or mechanism 'eval'"),
    "exec_as_function": ('x ~ normal(0, 1)\n  y = exec(x)', "unknown function 'exec'"),
    "open_as_function": (f'x = open("{MARKER}", "w")', "unknown function 'open'"),
    "os_system": (f'x = os.system("touch {MARKER}")', "unexpected character '.'"),
    "dunder_attribute": ("x ~ normal(0, 1)\n  y = x.__class__.__bases__[0].__subclasses__()", "unexpected character '.'"),
    "getattr": ('x ~ normal(0, 1)\n  y = getattr(x, "__globals__")', "unknown function 'getattr'"),
    "builtins_index_call": ('x = __builtins__["eval"]("1")', "unexpected '('"),
    "code_in_a_number_string": (f'x ~ normal("{PAYLOADS[0]}", 1)', "a string cannot be used as a number"),
    "code_in_an_option": (f'data x: real[2]\n  x ~ factorize(mlp(activation="{PAYLOADS[2]}"))', "must be one of"),
    "code_as_a_network": ('data x: real[2]\n  x ~ factorize(__import__("os"))', "unknown network '__import__'"),
    "import_as_distribution": ('x ~ __import__("os")', "unknown distribution or mechanism '__import__'"),
    "dunder_keyword": ("x ~ normal(0, 1, __class__=1)", "normal() has no argument '__class__'"),
    "import_in_an_index": ('x: real[2] ~ normal(0, 1)\n  y = x[__import__("os")]', "unknown function '__import__'"),
    "dunder_dimension": ("data x: real[__import__]", "undefined dimension '__import__'"),
    "given_builtins": ("data x: real[2]\n  x ~ factorize(made(), given=__builtins__)", "undefined name '__builtins__'"),
    "lambda": ("x = lambda: 0", "unexpected ':'"),
    "comprehension": ("x: real[2] ~ normal(0, 1)\n  y = [i for i in x]", "unexpected 'for'"),
    "dict": ('x = {"a": 1}', "unexpected '{'"),
    "f_string": (f'x = f"{{{PAYLOADS[0]}}}"', "unexpected"),
    "backticks": (f"x = `touch {MARKER}`", "unexpected character '`'"),
    "shell_substitution": (f"x = $(touch {MARKER})", "unexpected character '$'"),
    "backslash_continuation": ("x = 1 \\\n  + 2", "unexpected character '\\\\'"),
    "backslash_in_a_name": ("x\\u0041 ~ normal(0, 1)", "unexpected character '\\\\'"),
    "import_statement": ("import os", "unexpected 'os'"),
    "grammar_directive": ("%import common.WS", "unexpected character '%'"),
    "code_after_a_model": (f'x ~ normal(0, 1)\n}}\nimport os\nos.system("touch {MARKER}")', "unexpected 'import'"),
    "semicolon_shell": (f"x ~ normal(0, 1); rm -rf {MARKER}", "unexpected"),
    "homoglyph_eval": ("\u0435val ~ normal(0, 1)", "unexpected character '\u0435'"),
    "escape_sequences": ('x ~ normal("\\x00\\u0041\\N{BEL}", 1)', "a string cannot be used as a number"),
    "terminal_escape": ("x ~ normal(0, 1)\x1b]0;owned\x07", "unexpected character U+001B"),
    "deep_minus": ("x = " + "-" * 100000 + "1", "nested too deeply"),
    "deep_unclosed_calls": ("x = " + "exp(" * 20000, "unexpected '}'"),
    "deep_lists": ("x = " + "[" * 5000 + "1" + "]" * 5000, "nested too deeply"),
}

#: hostile-looking but harmless: reading a run folder that is not there is a clean error
COMPILE_REJECTED = {
    "prior_escaping_path": 'x: real[2] ~ prior("../../../../etc/passwd")',
    "prior_absolute_path": 'x: real[2] ~ prior("/etc")',
    "prior_home": 'x: real[2] ~ prior("~/.ssh/id_rsa", node="x")',
    "prior_payload": f'x: real[2] ~ prior("{PAYLOADS[0]}")',
}

#: names that shadow Python's are just names
HARMLESS = """model __import__ {
  eval ~ normal(0, 1)
  exec = eval * 2
  open ~ normal(exec, 1)
  os ~ half_normal(1)
  system = os + open
  __class__ ~ normal(system, 1)
  __builtins__ = __class__ - 1
  __init__ ~ normal(__builtins__, 1)
  self ~ normal(0, 1)
  key ~ normal(self, 1)
  params = key + __init__
  pickle ~ normal(params, 1)
}
"""


def _identifiers(text: str) -> set[str]:
    return set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", text))


def _from_the_file(code) -> bool:
    """Whether source handed to eval / exec / compile carries anything a hostile file wrote."""
    if isinstance(code, bytes):
        code = code.decode("utf-8", "replace")
    if not isinstance(code, str):  # a code object: look at its names and constants
        code = " ".join(map(str, (*getattr(code, "co_names", ()), *getattr(code, "co_consts", ()))))
    return any(s in code for s in (MARKER, "__subclasses__", "__globals__", "system(", "touch ", "rm -rf"))


class Sandbox:
    """Traps for everything a hostile file might reach, set only inside :meth:`running`.

    Libraries may ``exec`` code they generate themselves (networkx compiles its decorators
    lazily), so eval / exec / compile fail only when handed something that came from a file;
    spawning processes, unpickling and writing files fail whatever they are handed.
    """

    def __init__(self, folder: Path):
        self.folder = folder
        self.calls: list[str] = []
        self.before = set(sys.modules)

    def _trap(self, name):
        def refuse(*args, **kwargs):
            self.calls.append(name)
            raise AssertionError(f"{name} was called while handling a .gen file")

        return refuse

    def _watch(self, name, real):
        def run_unless_hostile(source, *args, **kwargs):
            if _from_the_file(source):
                self.calls.append(f"{name}({source!r:.80})")
                raise AssertionError(f"{name} was handed code from a .gen file")
            return real(source, *args, **kwargs)

        return run_unless_hostile

    @contextlib.contextmanager
    def running(self):
        real_open = builtins.open

        def guarded_open(file, mode="r", *args, **kwargs):
            if any(c in mode for c in "wax+") or MARKER in str(file):
                self.calls.append(f"open({file!r}, {mode!r})")
                raise AssertionError(f"open({file!r}, {mode!r}) while handling a .gen file")
            return real_open(file, mode, *args, **kwargs)

        with pytest.MonkeyPatch.context() as mp:
            for name in ("eval", "exec", "compile"):
                mp.setattr(builtins, name, self._watch(name, getattr(builtins, name)))
            for owner, name in [(os, "system"), (os, "popen"), (os, "execv"), (os, "execve"), (os, "execvp"),
                                (os, "fork"), (os, "posix_spawn"), (subprocess, "Popen"), (pickle, "load"),
                                (pickle, "loads"), (pickle, "Unpickler")]:
                mp.setattr(owner, name, self._trap(f"{owner.__name__}.{name}"))
            mp.setattr(builtins, "open", guarded_open)
            yield self

    def check(self, text: str) -> None:
        """Nothing trapped ran, no marker file exists, no module the file names was imported."""
        assert not self.calls, self.calls
        assert not (self.folder / MARKER).exists()
        new = {m.split(".")[0] for m in set(sys.modules) - self.before}
        assert not new & _identifiers(text), f"imported modules the file names: {new & _identifiers(text)}"


@pytest.fixture(scope="module")
def warm() -> None:
    """Build the parser and import every mechanism (lazily, on first use) before any trap is set."""
    _parser()
    prog = gendsl.compile(gendsl.parse("model warm {\n  x ~ normal(0, 1)\n}\n"))
    prog.sample(prog.init(jax.random.key(0)), jax.random.key(0), 2)


@pytest.fixture
def sandbox(warm, monkeypatch, tmp_path) -> Sandbox:
    monkeypatch.chdir(tmp_path)
    return Sandbox(tmp_path)


@pytest.mark.parametrize("name", sorted(REJECTED))
def test_hostile_file_is_rejected_and_runs_nothing(name, sandbox):
    body, message = REJECTED[name]
    text = f"model m {{\n  {body}\n}}\n"
    with sandbox.running(), pytest.raises(gendsl.GenError) as info:
        gendsl.parse_all(text, "hostile.gen")
    assert message in info.value.message, info.value.render()
    assert info.value.line is not None and info.value.column is not None
    rendered = info.value.render()
    assert rendered.startswith(f"hostile.gen:{info.value.line}:{info.value.column}: error: ")
    assert "\x1b" not in rendered and "\x07" not in rendered
    sandbox.check(text)


@pytest.mark.parametrize("name", sorted(COMPILE_REJECTED))
def test_prior_paths_are_data_not_code(name, sandbox):
    text = f"model m {{\n  {COMPILE_REJECTED[name]}\n}}\n"
    with sandbox.running():
        model = gendsl.parse(text, file="hostile.gen")
        with pytest.raises(gendsl.GenError) as info:
            gendsl.compile(model).describe()
    assert info.value.line == 2
    sandbox.check(text)


def _run_folder(folder: Path, model_gen: bytes | None, run_json: str | None, params: bool = False) -> None:
    folder.mkdir(parents=True)
    if model_gen is not None:
        (folder / "model.gen").write_bytes(model_gen)
    if run_json is not None:
        (folder / "run.json").write_text(run_json)
    if params:
        np.savez(folder / "params.npz")


DAMAGED_RUNS = {  # what the folder holds: model.gen, run.json
    "json_syntax": (b"model r {\n  x ~ normal(0, 1)\n}\n", '{"model": '),
    "json_list": (b"model r {\n  x ~ normal(0, 1)\n}\n", "[1, 2]"),
    "no_model_file": (None, "{}"),
    "model_not_utf8": (b"model r {\n  # caf\xe9\n  x ~ normal(0, 1)\n}\n", "{}"),
    "model_is_a_folder": (None, "{}"),
}


@pytest.mark.parametrize("name", sorted(DAMAGED_RUNS))
def test_a_damaged_run_folder_is_a_clean_error_at_the_prior(name, sandbox, tmp_path):
    model_gen, run_json = DAMAGED_RUNS[name]
    _run_folder(tmp_path / "run", model_gen, run_json)
    if name == "model_is_a_folder":
        (tmp_path / "run" / "model.gen").mkdir()
    text = 'model m {\n  x ~ prior("run")\n}\n'
    with sandbox.running(), pytest.raises(gendsl.GenError) as info:
        gendsl.parse(text, file=str(tmp_path / "m.gen"))
    assert (info.value.file, info.value.line, info.value.column) == (str(tmp_path / "m.gen"), 2, 7)
    sandbox.check(text)


def test_runs_that_are_priors_of_each_other_are_a_cycle_not_a_recursion(sandbox, tmp_path):
    _run_folder(tmp_path / "a", b'model a {\n  x ~ prior("../b")\n}\n', "{}")
    _run_folder(tmp_path / "b", b'model b {\n  x ~ prior("../a")\n}\n', "{}")
    text = 'model m {\n  x ~ prior("a")\n}\n'
    with sandbox.running(), pytest.raises(gendsl.GenError, match="cycle") as info:
        gendsl.parse(text, file=str(tmp_path / "m.gen"))
    assert info.value.line == 2 and info.value.file.endswith("model.gen")
    sandbox.check(text)


def test_a_typed_prior_of_itself_is_a_clean_error(sandbox, tmp_path):
    """The type is written, so the checker does not read the run: compiling must find the cycle."""
    _run_folder(tmp_path / "loop", b'model loop {\n  x: real[2] ~ prior(".")\n}\n', '{"model": "loop"}', params=True)
    text = 'model m {\n  x: real[2] ~ prior("loop")\n}\n'
    with sandbox.running():
        model = gendsl.parse(text, file=str(tmp_path / "m.gen"))
        with pytest.raises(gendsl.GenError):
            gendsl.compile(model).describe()
    sandbox.check(text)


def test_names_that_shadow_python_are_just_names(sandbox):
    with sandbox.running():
        model = gendsl.parse(HARMLESS, file="harmless.gen")
        prog = gendsl.compile(model)
        plan = prog.describe()
        params = prog.init(jax.random.key(0))
        draws = prog.sample(params, jax.random.key(1), 5)
        latent = {k: np.asarray(v) for k, v in draws.items() if model[k].role == "latent"}
        log_prob = np.asarray(prog.log_prob(params, latent))
    assert model.name == "__import__" and "__builtins__" in plan
    assert set(draws) >= {"eval", "exec", "open", "os", "system", "__class__", "__builtins__", "self", "pickle"}
    np.testing.assert_allclose(draws["exec"], 2 * np.asarray(draws["eval"]), rtol=1e-6)
    np.testing.assert_allclose(draws["__builtins__"], np.asarray(draws["__class__"]) - 1, rtol=1e-5, atol=1e-6)
    assert log_prob.shape == (5,) and np.all(np.isfinite(log_prob))
    sandbox.check(HARMLESS)


@pytest.mark.parametrize("name", sorted(REJECTED)[::3] + ["deep_minus", "terminal_escape"])
def test_hostile_file_through_the_cli(name, sandbox, tmp_path):
    body, message = REJECTED[name]
    text = f"model m {{\n  {body}\n}}\n"
    path = tmp_path / "hostile.gen"
    path.write_bytes(text.encode("utf-8"))
    before = sorted(p.name for p in tmp_path.iterdir())
    out, err = io.StringIO(), io.StringIO()
    with sandbox.running(), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["check", str(path)])
    assert code == 1
    assert "Traceback" not in err.getvalue() and "\x1b" not in err.getvalue()
    assert re.match(rf"{re.escape(str(path))}:\d+:\d+: error: ", err.getvalue())
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # check writes nothing
    sandbox.check(text)


# --------------------------------------------------------------------------- the package source

PACKAGE = Path(gendsl.__file__).parent
UNSAFE_MODULES = {"pickle", "cPickle", "cloudpickle", "dill", "marshal", "shelve", "joblib"}
CODE_RUNNERS = {"eval", "exec", "__import__"}


def _unsafe(tree: ast.AST) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in CODE_RUNNERS:
            found.append((node.lineno, f"{node.func.id}("))
        if isinstance(node, ast.Name) and node.id in CODE_RUNNERS | UNSAFE_MODULES:
            found.append((node.lineno, node.id))
        if isinstance(node, ast.Import):
            found += [(node.lineno, f"import {a.name}") for a in node.names if a.name.split(".")[0] in UNSAFE_MODULES]
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in UNSAFE_MODULES:
            found.append((node.lineno, f"from {node.module} import"))
        if isinstance(node, ast.Attribute) and node.attr in UNSAFE_MODULES | CODE_RUNNERS:
            found.append((node.lineno, f".{node.attr}"))
        if isinstance(node, ast.keyword) and node.arg == "allow_pickle" and not (
                isinstance(node.value, ast.Constant) and node.value.value is False):
            found.append((node.lineno, "allow_pickle not False"))
        if isinstance(node, ast.Constant) and node.value in CODE_RUNNERS:  # getattr(builtins, "eval")
            found.append((node.lineno, repr(node.value)))
    return found


def _code_lines(text: str) -> list[tuple[int, str]]:
    """The lines of a source file with comments and string literals blanked (tokenize)."""
    import tokenize

    lines = text.splitlines()
    for tok in tokenize.generate_tokens(io.StringIO(text).readline):
        if tok.type in (tokenize.COMMENT, tokenize.STRING):
            (r0, c0), (r1, c1) = tok.start, tok.end
            for r in range(r0, r1 + 1):
                a = c0 if r == r0 else 0
                b = c1 if r == r1 else len(lines[r - 1])
                lines[r - 1] = lines[r - 1][:a] + " " * (b - a) + lines[r - 1][b:]
    return list(enumerate(lines, 1))


def test_package_source_runs_no_code_and_unpickles_nothing():
    sources = sorted(PACKAGE.rglob("*.py"))
    assert len(sources) > 20
    problems = []
    for path in sources:
        text = path.read_text(encoding="utf-8")
        problems += [f"{path.relative_to(PACKAGE)}:{line}: {what}" for line, what in _unsafe(ast.parse(text))]
        for line, code in _code_lines(text):
            for pattern in (r"(?<![\w.])eval\(", r"(?<![\w.])exec\(", r"\bpickle\b", r"allow_pickle\s*=\s*True"):
                if re.search(pattern, code):
                    problems.append(f"{path.relative_to(PACKAGE)}:{line}: {code.strip()}")
    assert not problems, "\n".join(problems)


def test_the_source_scan_finds_what_it_looks_for():
    bad = ("import pickle\nx = eval('1')\nexec('y = 2')\nnp.load(f, allow_pickle=True)\n"
           "__import__('os')\ngetattr(builtins, 'eval')\nfrom dill import loads\n")
    found = {what for _, what in _unsafe(ast.parse(bad))}
    assert {"import pickle", "eval(", "exec(", "allow_pickle not False", "__import__(", "'eval'",
            "from dill import"} <= found
    assert not _unsafe(ast.parse("np.load(f, allow_pickle=False)  # no pickle, no eval(\n'''no eval( here'''\n"))
    assert [line for line, code in _code_lines("x = 1  # eval(\ny = 'exec('\nz = eval(q)\n") if "eval(" in code] == [3]


@pytest.mark.parametrize("option", ["coupling(layers=2147483647)", "coupling(hidden=[100000])",
                                    "coupling(hidden=[8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, "
                                    "8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, "
                                    "8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8])",
                                    "generator(net=mlp(hidden=[8]), critic=mlp(hidden=[8]), critic_steps=1000000000)"])
def test_huge_options_are_refused_at_check_time(option):
    """A few bytes must not ask for a 32 GiB network or a billion-step loop: refused by the
    option's limit, naming it, before anything is built."""
    with pytest.raises(GenSemanticError, match="too large|too many sizes"):
        gendsl.parse(f"model m {{\n  data x: real[2]\n  x ~ pushforward(normal(0, 1), {option})\n}}")
