"""Run folders, opened in one place: for ``gendsl sample``, ``gendsl distill``, ``prior("RUN")``
and every later reader of a ``gendsl fit`` folder.

A run folder holds ``model.gen`` (the source), ``run.json`` (model name, dimensions, seed, data
source, the folders it was fit from, and for a distilled sampler ``distilled_steps`` and
``distilled_nodes``), ``params/`` (the parameters), ``metrics.json`` and pictures.

This module is also the source resolver the pure passes are handed (:data:`SOURCES`): the
semantic check asks it for the type of a ``prior(...)``, the lowering for the trained node and its
frozen parameters. :data:`CATALOG` is the registry's catalog with this resolver.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gendsl.core.model import Model
from gendsl.core.signatures import Spec
from gendsl.core.types import VarType
from gendsl.errors import GenDataError, GenError, GenSemanticError, Span
from gendsl.lang import parse, read_text
from gendsl.numerics.confined import read_text as read_record_text
from gendsl.program import Program
from gendsl.registry import CATALOG as _BARE_CATALOG
from gendsl.registry import MECHANISMS
from gendsl.sources import PriorSource, pick_node

__all__ = ["Run", "RunSources", "SOURCES", "CATALOG", "read_record", "open_run", "locate_run", "prior_search_dirs",
           "run_search_dirs", "student_model", "as_student"]

#: most ``prior(...)`` runs opened inside one another (a longer chain is refused, not recursed into)
MAX_PRIOR_DEPTH = 32

#: more folders a relative run path is looked up in (those a reopened run was fit from)
_SEARCH_DIRS: contextvars.ContextVar[tuple[Path, ...]] = contextvars.ContextVar("gendsl_prior_search_dirs",
                                                                               default=())
#: the run folders being read or opened, outermost first (to refuse cycles)
_OPENING: contextvars.ContextVar[tuple[str, ...]] = contextvars.ContextVar("gendsl_runs_being_opened", default=())


@contextlib.contextmanager
def prior_search_dirs(dirs):
    """Look relative ``prior("RUN")`` paths up in ``dirs`` too, inside this block."""
    token = _SEARCH_DIRS.set((*_SEARCH_DIRS.get(), *(Path(d) for d in dirs)))
    try:
        yield
    finally:
        _SEARCH_DIRS.reset(token)


def run_search_dirs(record) -> tuple[str, ...]:
    """The folders a run was fit from (``run.json``'s ``prior_dirs``; none in older runs)."""
    dirs = record.get("prior_dirs") if isinstance(record, dict) else None
    return tuple(d for d in dirs if isinstance(d, str)) if isinstance(dirs, list) else ()


def _candidates(path: str, file: str | None) -> list[Path]:
    out = [Path(path)]
    if not Path(path).is_absolute():
        if file:
            out.append(Path(file).parent / path)
        out += [d / path for d in _SEARCH_DIRS.get()]
    return out


def _holds_run(folder: Path) -> bool:
    """Whether ``folder`` holds ``run.json``; a path the system cannot even look up (too long, a
    NUL byte) holds none."""
    try:
        return (folder / "run.json").is_file()
    except (OSError, ValueError):
        return False


def _shown(path: str) -> str:
    """``path`` for a message: at most 200 characters."""
    return path if len(path) <= 200 else f"{path[:120]}...{path[-40:]} ({len(path)} characters)"


def locate_run(path: str, file: str | None = None) -> str:
    """The absolute folder of the run ``path`` as it is found now, or ``path`` unchanged."""
    for c in _candidates(path, file):
        if _holds_run(c):
            return str(c.resolve())
    return path


def _run_folder(path: str, span: Span | None) -> Path:
    for c in _candidates(path, span.file if span is not None else None):
        if _holds_run(c):
            return c.resolve()
    raise GenSemanticError(f"no trained run at \"{_shown(path)}\" (a folder written by `gendsl fit`, with run.json)",
                           span)


@contextlib.contextmanager
def _entering(folder: Path, span: Span | None):
    """Refuse a run that leads back to one being read, or a chain of runs too deep."""
    chain = _OPENING.get()
    if str(folder) in chain:
        raise GenSemanticError(f"the run {folder} depends on itself (through {' -> '.join(chain)}): runs that are "
                               f"priors of each other form a cycle", span)
    if len(chain) >= MAX_PRIOR_DEPTH:
        raise GenSemanticError(f"more than {MAX_PRIOR_DEPTH} runs are priors of one another; flatten the chain", span)
    token = _OPENING.set((*chain, str(folder)))
    try:
        yield
    finally:
        _OPENING.reset(token)


def read_record(folder: str | Path) -> dict:
    """``run.json`` of a run folder, or a :class:`GenDataError` saying the folder is not a run."""
    path = Path(folder) / "run.json"
    if not path.exists():
        raise GenDataError(f"{folder} is not a gendsl run folder: {path} is missing")
    try:
        record = json.loads(read_record_text(path, "the run record"))
    except (ValueError, RecursionError):
        raise GenDataError(f"{folder} is not a gendsl run folder: {path} is not a JSON record") from None
    if not isinstance(record, dict):
        raise GenDataError(f"{path} does not hold a run record (a JSON object)")
    dims, pixels = record.get("dims") or {}, record.get("pixels") or []
    if not isinstance(record.get("model"), (str, type(None))) or not isinstance(dims, dict) or not all(
            isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool) and v >= 0 for k, v in dims.items()) \
            or not (isinstance(pixels, list) and all(isinstance(v, str) for v in pixels)):
        raise GenDataError(f"{path} is damaged: its 'model' must be a model name, its 'dims' integers by name and its "
                           f"'pixels' a list of names")
    return record


def _read_model(folder: Path, record: dict) -> Model:
    source = folder / "model.gen"
    with prior_search_dirs(run_search_dirs(record)):  # its priors, relative to where it was fit
        return parse(read_text(source), CATALOG, model=record.get("model"), file=str(source))


class RunSources:
    """The resolver of ``prior(...)`` sources: run folders (text) or trained programs (builder API)."""

    def anchor(self, source: Any, file: str | None) -> Any:
        """A relative run folder made absolute where it is found now (an in-memory source as is)."""
        return locate_run(source, file) if isinstance(source, str) else source

    def type_of(self, source: Any, node: str | None, span: Span | None) -> VarType:
        """The type of the variable the source stands for (reads only the run's model text)."""
        if isinstance(source, PriorSource):
            return source.vtype
        folder = _run_folder(source, span)
        with _entering(folder, span):
            try:
                record = read_record(folder)
                model = _read_model(folder, record)
                return model[pick_node(model, node, span)].type.bind(record.get("dims") or {})
            except GenSemanticError:
                raise
            except (GenError, OSError, ValueError, TypeError, KeyError, RecursionError) as err:
                message = err.message if isinstance(err, GenError) else f"{type(err).__name__}: {err}"
                raise GenSemanticError(f"cannot read the run \"{source}\" for prior(...): {message}", span) from None

    def load(self, source: Any, node: str | None, span: Span | None):
        """``(trained node, its frozen parameters, model name)`` of the source."""
        if isinstance(source, PriorSource):
            program, params = source.program, source.params
        else:
            folder = _run_folder(source, span)
            with _entering(folder, span):
                try:
                    run = open_run(folder)
                except GenSemanticError:
                    raise
                except (GenError, OSError, ValueError, RecursionError) as err:
                    message = err.message if isinstance(err, GenError) else f"{type(err).__name__}: {err}"
                    raise GenSemanticError(f"cannot read the trained run at \"{source}\": {message}", span) from None
            program, params = run.program, run.params
        name = pick_node(program.model, node, span)
        return program.plan.node(name).mechanism, params.get(name, {}), program.model.name


#: the resolver handed to the check and the lowering
SOURCES = RunSources()
#: the registry's catalog, with run folders as sources
CATALOG = _BARE_CATALOG.with_sources(SOURCES)


# -- distilled samplers: the capability of a mechanism's declaration ---------------------------------


def student_model(model: Model, steps: int, nodes: list[str] | None = None) -> Model:
    """A copy of ``model`` whose distillable nodes (or only ``nodes``) are ``steps``-step samplers,
    as each mechanism's declaration makes them (:meth:`student_spec`)."""
    graph = model.graph.copy()
    for name in graph.nodes:
        var = graph.nodes[name]["var"]
        declaration = MECHANISMS.get(var.mechanism) if var.stochastic else None
        if declaration is not None and "distillable" in declaration.capabilities and (nodes is None or name in nodes):
            spec: Spec = declaration.student_spec(var.spec, int(steps))
            graph.nodes[name]["var"] = dataclasses.replace(var, spec=spec)
    return Model(model.name, graph, model.span, model.statements)


def as_student(program: Program, record: dict) -> Program:
    """The program a run record describes: the student of ``program`` when the record has
    ``distilled_steps`` (and ``distilled_nodes``), else ``program`` itself."""
    if not record.get("distilled_steps"):
        return program
    steps, nodes = record["distilled_steps"], record.get("distilled_nodes")
    if not isinstance(steps, int) or steps < 1 or not (nodes is None or isinstance(nodes, list)):
        raise GenDataError("run.json has a damaged distillation record (distilled_steps, distilled_nodes)")
    return Program(student_model(program.model, steps, nodes), program.dims, SOURCES.load)


@dataclass
class Run:
    """A finished run: its folder, compiled program, parameters and record."""

    folder: Path
    program: Program
    params: dict
    record: dict


def open_run(folder: str | Path) -> Run:
    """Rebuild the program (a distilled student when the record says so) and the parameters of a
    run folder written by ``gendsl fit`` or ``gendsl distill``."""
    folder = Path(folder)
    record = read_record(folder)
    dims = record.get("dims") or {}
    program = as_student(Program(_read_model(folder, record), dims, SOURCES.load), record)
    return Run(folder, program, program.load_params(folder), record)
