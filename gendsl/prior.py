"""Trained models as distributions: ``x ~ prior("RUN_DIR")`` in text, ``gendsl.prior(prog, params)``
in Python. The prior is one node of a trained program (by default its single modelled variable),
with its parameters frozen: its log-density scores the new model's variable and its sampler
draws it.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gendsl.errors import GenSemanticError, Span
from gendsl.ir.types import VarType

__all__ = ["PriorSource", "prior", "resolve_source", "source_type", "locate_run", "prior_search_dirs",
           "run_search_dirs"]


@dataclass(frozen=True, eq=False)
class PriorSource:
    """A trained program and its parameters, used as a prior (built by :func:`prior`)."""

    program: Any
    params: Any = field(repr=False)
    node: str | None = None

    def node_name(self) -> str:
        return pick_node(self.program.model, self.node)

    @property
    def vtype(self) -> VarType:
        return self.program.model[self.node_name()].type


def pick_node(model, node: str | None, span: Span | None = None) -> str:
    """The node of ``model`` a prior stands for: ``node``, or the model's one modelled variable."""
    stochastic = [v.name for v in model.by_role("observed", "latent")]
    if node is not None:
        if node not in stochastic:
            raise GenSemanticError(f"the trained model '{model.name}' has no modelled variable '{node}' "
                                   f"(it has: {', '.join(stochastic)})", span)
        return node
    observed = [v.name for v in model.by_role("observed")]
    choices = observed if len(observed) == 1 else stochastic
    if len(choices) != 1:
        raise GenSemanticError(f"the trained model '{model.name}' has several variables ({', '.join(stochastic)}): "
                               f"name one with node=\"...\"", span)
    return choices[0]


def prior(program, params, node: str | None = None):
    """A trained ``program`` (with ``params``) as a right-hand side for the builder API.

    Example::

        m.sample("x", gendsl.prior(flow_prog, fit.params))
    """
    from gendsl.ir.ast import Opaque
    from gendsl.ir.builder import Ref, call

    source = PriorSource(program, params, node)
    source.node_name()  # fail early, at the caller's line
    return call("prior", Ref(Opaque(source, f"prior of {program.model.name}")), _depth=3,
                **({"node": node} if node else {}))


#: more folders a relative run path is looked up in (those a reopened run was fit from)
_SEARCH_DIRS: contextvars.ContextVar[tuple[Path, ...]] = contextvars.ContextVar("gendsl_prior_search_dirs",
                                                                               default=())


@contextlib.contextmanager
def prior_search_dirs(dirs):
    """Look relative ``prior("RUN")`` paths up in ``dirs`` too, inside this block.

    A run folder's ``model.gen`` is a copy of the fitted file: :func:`gendsl.runs.open_run`
    reopens it with the folders it was fit from (the working directory and the file's own), so
    its priors are found from anywhere.
    """
    token = _SEARCH_DIRS.set((*_SEARCH_DIRS.get(), *(Path(d) for d in dirs)))
    try:
        yield
    finally:
        _SEARCH_DIRS.reset(token)


def _candidates(path: str, file: str | None) -> list[Path]:
    out = [Path(path)]
    if not Path(path).is_absolute():
        if file:
            out.append(Path(file).parent / path)
        out += [d / path for d in _SEARCH_DIRS.get()]
    return out


def locate_run(path: str, file: str | None = None) -> str:
    """The absolute folder of the run ``path`` (as :func:`resolve_source` would find it now),
    or ``path`` unchanged when there is none (the error then comes when it is opened)."""
    for c in _candidates(path, file):
        if (c / "run.json").is_file():
            return str(c.resolve())
    return path


def _run_folder(path: str, span: Span | None) -> Path:
    for c in _candidates(path, span.file if span is not None else None):
        if (c / "run.json").is_file():
            return c
    raise GenSemanticError(f"no trained run at \"{path}\" (a folder written by `gendsl fit`, with run.json)", span)


def source_type(source, node: str | None, span: Span | None = None) -> VarType:
    """The type of the variable a prior source stands for (reads only the run's model text)."""
    if isinstance(source, PriorSource):
        return source.vtype
    from gendsl.lang.frontend import parse

    folder = _run_folder(source, span)
    record = json.loads((folder / "run.json").read_text())
    with prior_search_dirs(run_search_dirs(record)):
        model = parse((folder / "model.gen").read_text(), model=record.get("model"), file=str(folder / "model.gen"))
    return model[pick_node(model, node, span)].type.bind(record.get("dims") or {})


def resolve_source(source, node: str | None, span: Span | None = None) -> PriorSource:
    """Load a run folder (or pass an in-memory source through) as a :class:`PriorSource`."""
    if isinstance(source, PriorSource):
        return source
    from gendsl.runs import open_run

    folder = _run_folder(source, span).resolve()
    opening = _OPENING.get()
    if folder in opening:
        raise GenSemanticError(f"the prior \"{source}\" depends on itself (through {' -> '.join(map(str, opening))})", span)
    token = _OPENING.set((*opening, folder))
    try:
        run = open_run(folder)
    except (OSError, ValueError, UnicodeDecodeError) as err:
        raise GenSemanticError(f"cannot read the trained run at \"{source}\": {err}", span) from None
    finally:
        _OPENING.reset(token)
    return PriorSource(run.program, run.params, node)


_OPENING: contextvars.ContextVar[tuple] = contextvars.ContextVar("gendsl_priors_being_opened", default=())


def run_search_dirs(record) -> tuple[str, ...]:
    """The folders a run was fit from (``run.json``'s ``prior_dirs``; none in older runs)."""
    dirs = record.get("prior_dirs") if isinstance(record, dict) else None
    return tuple(d for d in dirs if isinstance(d, str)) if isinstance(dirs, list) else ()
