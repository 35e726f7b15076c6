"""The layers of gendsl import downward only: read from every module's source, no exceptions.

Every import statement of every module counts, also one inside a function. A module may import
a module of a lower layer, or of its own layer when that makes no cycle; never one of a higher
layer. The layers that know no JAX import none of jax, jaxlib, equinox, numpyro, blackjax,
diffrax or optax. docs/architecture.md draws the same layers.
"""

from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx
import pytest

ROOT = Path(__file__).resolve().parent.parent / "gendsl"

#: lowest first; a module belongs to the first entry that is it or a package above it
LAYERS = [
    ("errors", ["gendsl.errors"]),
    ("core", ["gendsl.core"]),
    ("lang", ["gendsl.lang"]),
    ("nn and numerics", ["gendsl.nn", "gendsl.numerics"]),
    ("mechanisms", ["gendsl.mechanisms"]),
    ("registry", ["gendsl.registry"]),
    ("compiler", ["gendsl.compiler"]),
    ("inference", ["gendsl.inference"]),
    ("application", ["gendsl.program", "gendsl.sources", "gendsl.runfolder", "gendsl.api", "gendsl.builder",
                     "gendsl.data", "gendsl.metrics", "gendsl.image_metrics", "gendsl.plots", "gendsl.fit_metrics", "gendsl.runs",
                     "gendsl.distill", "gendsl.sampling_options", "gendsl.inference_run", "gendsl.advisor", "gendsl.bench",
                     "gendsl.docgen",
                     "gendsl.cli"]),
    ("public face", ["gendsl"]),
]
NO_JAX_LAYERS = {"errors", "core", "lang"}
JAX_FAMILY = {"jax", "jaxlib", "equinox", "numpyro", "blackjax", "diffrax", "optax", "lineax", "flowjax"}
#: sibling layers that must not import each other
PEERS = [("gendsl.nn", "gendsl.numerics")]


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


MODULES = _modules()


def _imports(name: str, path: Path) -> list[tuple[str, int, bool]]:
    """(imported module, line, inside a function) for every import in the file."""
    tree = ast.parse(path.read_text(), str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = []

    def visit(node, in_function):
        for child in ast.iter_child_nodes(node):
            inside = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import):
                out.extend((a.name, child.lineno, inside) for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    anchor = package.split(".")[: len(package.split(".")) - child.level + 1]
                    base = ".".join([*anchor, base] if base else anchor)
                names = [f"{base}.{a.name}" for a in child.names]
                modules = [n for n in names if n in MODULES]  # ``from pkg import module``: the module
                out.extend((n, child.lineno, inside) for n in modules)
                if len(modules) < len(names):
                    out.append((base, child.lineno, inside))
            visit(child, inside)

    visit(tree, False)
    return out


def _layer(module: str) -> int:
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if prefix != "gendsl" and (module == prefix or module.startswith(prefix + ".")):
                return index
    if module == "gendsl":
        return len(LAYERS) - 1
    raise AssertionError(f"{module} is in no layer: add it to LAYERS and to docs/architecture.md")


def _graph() -> nx.DiGraph:
    graph = nx.DiGraph()
    graph.add_nodes_from(MODULES)
    for name, path in MODULES.items():
        for target, _, _ in _imports(name, path):
            if target in MODULES and target != name:
                graph.add_edge(name, target)
    return graph


def test_every_module_has_a_layer():
    for name in MODULES:
        _layer(name)


@pytest.mark.parametrize("name", sorted(MODULES))
def test_imports_point_down(name):
    here = _layer(name)
    for target, line, _ in _imports(name, MODULES[name]):
        if target not in MODULES or target == name:
            continue
        assert _layer(target) <= here, (f"{name}:{line} imports {target}, a higher layer "
                                        f"({LAYERS[_layer(target)][0]} above {LAYERS[here][0]})")
        for a, b in PEERS:
            for x, y in ((a, b), (b, a)):
                assert not ((name == x or name.startswith(x + ".")) and (target == y or target.startswith(y + "."))), \
                    f"{name}:{line} imports {target}: {x} and {y} are peers"


@pytest.mark.parametrize("name", sorted(MODULES))
def test_no_gendsl_import_inside_a_function(name):
    inside = [(t, line) for t, line, in_function in _imports(name, MODULES[name])
              if in_function and (t == "gendsl" or t.startswith("gendsl."))]
    assert not inside, f"{name} imports {inside[0][0]} inside a function (line {inside[0][1]}): import it at the top"


def test_no_import_cycle():
    cycles = list(nx.simple_cycles(_graph()))
    assert not cycles, f"import cycle: {' -> '.join(cycles[0] + cycles[0][:1])}"


@pytest.mark.parametrize("name", sorted(n for n in MODULES if LAYERS[_layer(n)][0] in NO_JAX_LAYERS))
def test_the_pure_layers_know_no_jax(name):
    for target, line, _ in _imports(name, MODULES[name]):
        assert target.split(".")[0] not in JAX_FAMILY, f"{name}:{line} imports {target} in a layer without JAX"


def test_a_cycle_or_an_upward_import_would_be_seen(tmp_path):
    """The reader itself: an upward import inside a function and a relative import are found."""
    path = tmp_path / "core" / "x.py"
    path.parent.mkdir()
    path.write_text("def f():\n    from gendsl.registry import MECHANISMS\nfrom . import types\n")
    found = {(t, inside) for t, _, inside in _imports("gendsl.core.x", path)}
    assert ("gendsl.registry", True) in found and ("gendsl.core.types", False) in found
    assert _layer("gendsl.registry") > _layer("gendsl.core.x")
