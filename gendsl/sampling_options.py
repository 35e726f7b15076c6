"""Sampling-time choices: the same trained model, drawn with other steps, solver or guidance.

An option of a mechanism that only changes how draws are made is flagged in its signature
(:attr:`~gendsl.core.signatures.Param.sampling`: evolve's ``sampler=`` and ``guidance=``, an
energy's ``sampler=``). :func:`with_sampling` returns the program whose nodes use new values
for them, or for the options of the sampler they hold (``steps``, ``solver``, ``rtol``...); the
parameters trained for the original fit it unchanged (their fingerprint leaves these options
out), so::

    fast = with_sampling(prog, steps=8, guidance=2.0)
    draws = fast.sample(params, key, 1000)
    edm = with_sampling(prog, sampler="edm_heun", steps=18)
"""

from __future__ import annotations

import dataclasses
from typing import Any

from gendsl.core.check import Typing
from gendsl.core.model import Model
from gendsl.core.resolve import MAX_INT_OPTION
from gendsl.core.signatures import Signature, Spec, default_spec
from gendsl.errors import GenDataError
from gendsl.program import Program
from gendsl.registry import MECHANISMS, SIGNATURES
from gendsl.runfolder import CATALOG

__all__ = ["with_sampling", "sampling_choices"]

_KINDS = {"int": (int,), "number": (int, float), "str": (str,), "int_or_str": (int, str)}
#: option kinds whose value is a call (``sampler=edm_heun(...)``): a new one is given by its name
_SPEC_KINDS = ("sampler", "kernel")


def _checked(signature: Signature, name: str, value: Any, where: str) -> Any:
    """``value`` for the option ``name`` of ``signature``, checked as the language checks it:
    its kind, its choices (a whole number passes where ``int_or_str`` lists names), its range
    (up to the option's ``limit``)."""
    param = next(p for p in signature.params if p.name == name)
    kinds = _KINDS.get(param.kind)
    if kinds is None or isinstance(value, bool) or not isinstance(value, kinds):
        raise GenDataError(f"{where}: {name}= takes {param.kind.replace('_', ' ')} values, got {value!r}")
    if param.choices and value not in param.choices and not (param.kind == "int_or_str" and isinstance(value, int)):
        raise GenDataError(f"{where}: {name}= is one of {', '.join(map(repr, param.choices))}, got {value!r}")
    top = param.limit if param.limit is not None else MAX_INT_OPTION
    if isinstance(value, int) and param.kind != "number" and not 0 <= value <= top:
        raise GenDataError(f"{where}: {name}= takes a whole number from 0 to {top}, got {value}")
    return float(value) if param.kind == "number" else value


def _named_spec(kind: str, option: str, name: str, where: str) -> Spec | None:
    """The spec ``name()`` with its defaults for an option that takes a ``kind`` (``sampler=``);
    None when ``name`` is of another kind (a sampler for other mechanisms)."""
    signature = SIGNATURES.get(name)
    if signature is None or signature.category not in _SPEC_KINDS:
        offered = sorted(n for n, sig in SIGNATURES.items() if sig.category in _SPEC_KINDS)
        raise GenDataError(f"{where}: {option}= takes one of {', '.join(offered)}, got {name!r}")
    return default_spec(signature) if signature.category == kind else None


def _changed(spec: Spec, changes: dict, used: set, where: str) -> Spec:
    """``spec`` (a mechanism's) with its sampling options and those of its sampler changed."""
    signature = SIGNATURES.get(spec.name)
    options = dict(spec.options)
    for param in signature.params:
        if not param.sampling:
            continue
        if param.name in changes and isinstance(changes[param.name], str) and param.kind in _SPEC_KINDS:
            named = _named_spec(param.kind, param.name, changes[param.name], where)
            if named is not None:  # a sampler of another kind (an MCMC kernel for an energy) leaves this node
                options[param.name] = named
                used.add(param.name)
        elif param.name in changes and not isinstance(options.get(param.name), Spec):
            options[param.name] = _checked(signature, param.name, changes[param.name], where)
            used.add(param.name)
        inner = options.get(param.name)
        if isinstance(inner, Spec):
            inner_signature = SIGNATURES.get(inner.name)
            values = dict(inner.options)
            for key in set(changes) & set(values):
                values[key] = _checked(inner_signature, key, changes[key], f"{where}, {inner.name}()")
                used.add(key)
            options[param.name] = dataclasses.replace(inner, options=values)
    return dataclasses.replace(spec, options=options)


def sampling_choices(program: Program) -> dict[str, list[str]]:
    """Per node, the sampling-time options :func:`with_sampling` can change."""
    out = {}
    for var in program.model.variables():
        signature = SIGNATURES.get(var.spec.name) if var.stochastic and var.spec is not None else None
        if signature is None:
            continue
        names = []
        for param in (p for p in signature.params if p.sampling):
            inner = var.spec.options.get(param.name)
            names += list(inner.options) if isinstance(inner, Spec) else [param.name]
        if names:
            out[var.name] = names
    return out


def with_sampling(program: Program, nodes: list[str] | None = None, **changes: Any) -> Program:
    """``program`` with sampling-time options changed on every node that has them (or ``nodes``).

    ``changes`` are option names and values, e.g. ``steps=8, solver="heun", guidance=2.0``, or
    ``sampler="edm_heun"`` (another sampler, with its defaults, then the other changes that are
    its options); an option no node has is an error listing what each node can change.
    """
    if not changes:
        return program
    model = program.model
    graph, used = model.graph.copy(), set()
    types = {v.name: v.type for v in model.variables()}
    int_inputs = frozenset(v.name for v in model.by_role("input") if v.type.base == "int")
    for name in graph.nodes:
        var = graph.nodes[name]["var"]
        if var.stochastic and var.spec is not None and (nodes is None or name in nodes) and SIGNATURES.get(var.spec.name):
            spec = _changed(var.spec, changes, used, f"'{name}'")
            declaration = MECHANISMS.get(spec.name)
            if declaration is not None:  # the same option rules as the language's check
                declaration.check_spec(name, spec, var.type, Typing(types, int_inputs, CATALOG, var.rhs))
            graph.nodes[name]["var"] = dataclasses.replace(var, spec=spec)
    unused = sorted(set(changes) - used)
    if unused:
        offered = "; ".join(f"{node}: {', '.join(names)}" for node, names in sampling_choices(program).items())
        raise GenDataError(f"no node of '{program.model.name}' has the sampling option {', '.join(unused)} "
                           f"({offered or 'no node has sampling options'})")
    return Program(Model(model.name, graph, model.span, model.statements), program.dims, program.load_source)
