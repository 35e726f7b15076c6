"""Resolve a call against its signature: names, arity, kinds of arguments, defaults.

``resolve_call(call, signatures, category)`` turns ``coupling(layers=8, hidden=[64, 64])`` into
``Spec("coupling", "map", {"layers": 8, "hidden": (64, 64), "activation": "silu"})`` or
raises :class:`~gendsl.errors.GenSemanticError` at the offending argument.
"""

from __future__ import annotations

from typing import Mapping

from gendsl.core.ast import Call, Expr, ListExpr, Name, Num, Opaque, Str, Unary, unparse
from gendsl.core.signatures import REQUIRED, Param, Signature, Spec
from gendsl.errors import GenSemanticError, did_you_mean

__all__ = ["resolve_call", "literal", "MAX_INT_OPTION"]

MAX_INT_OPTION = 2**31 - 1
#: most sizes an ``ints`` option (hidden=[...]) may list
MAX_LIST_OPTION = 64
"""Largest integer option (sizes, steps): int32."""

_CATEGORY_WORDS = {
    "distribution": "a distribution such as normal(0, 1)",
    "mechanism": "a mechanism (factorize, pushforward, evolve, energy)",
    "network": "a network such as mlp(hidden=[64, 64])",
    "map": "a map such as coupling(layers=8, hidden=[64, 64])",
    "process": "a process such as vp(), ve() or flow_matching()",
    "sampler": "a sampler such as ode(steps=64) or sde(steps=256)",
    "kernel": "an MCMC kernel such as nuts() or mala(step_size=0.01)",
    "objective": "a training objective such as dsm(sigma=0.1), ssm() or cd(steps=20)",
}


def literal(expr: Expr):
    """The Python value of a literal expression (number, string, list of literals), else raise."""
    if isinstance(expr, Num):
        return expr.value
    if isinstance(expr, Str):
        return expr.value
    if isinstance(expr, Unary) and isinstance(expr.operand, Num):
        return -expr.operand.value
    if isinstance(expr, ListExpr):
        return tuple(literal(i) for i in expr.items)
    raise ValueError(unparse(expr))


def _err(msg: str, expr: Expr) -> GenSemanticError:
    return GenSemanticError(msg, expr.span)


def _by_category(signatures: Mapping[str, Signature], category: str) -> dict[str, Signature]:
    return {n: s for n, s in signatures.items() if s.category == category}


def _value(param: Param, expr: Expr, owner: str, signatures: Mapping[str, Signature]):
    kind = param.kind
    where = f"argument '{param.name}' of {owner}()"
    if kind == "expr":
        return expr
    if kind == "expr|network":
        if isinstance(expr, Call) and expr.func in _by_category(signatures, "network"):
            return resolve_call(expr, signatures, "network")
        return expr
    if kind == "source":  # a run folder (text) or an in-memory trained program (builder API)
        if isinstance(expr, Opaque):
            return expr.fn
        if isinstance(expr, Str):
            return expr.value
        raise _err(f"{where} must be the path of a `gendsl fit` run folder, e.g. \"runs/moons\"", expr)
    alternatives = kind.split("|")
    if "name" in alternatives and isinstance(expr, Name):
        return expr.id
    cats = [c for c in alternatives if c in _CATEGORY_WORDS]
    if cats:
        if isinstance(expr, Call):
            for c in cats:
                sig = signatures.get(expr.func)
                if sig is not None and sig.category == c:
                    return resolve_call(expr, signatures, c)
            known = [n for c in cats for n in _by_category(signatures, c)]
            sig = signatures.get(expr.func)
            if sig is not None:
                raise _err(f"{where} must be {' or '.join(_CATEGORY_WORDS[c] for c in cats)}, "
                           f"but '{expr.func}' is a {sig.category}", expr)
            raise _err(f"unknown {cats[0]} '{expr.func}' in {where}{did_you_mean(expr.func, known)}", expr)
        raise _err(f"{where} must be {' or '.join(_CATEGORY_WORDS[c] for c in cats)}"
                   + (" or a variable name" if "name" in alternatives else "") + f", got '{unparse(expr)}'", expr)
    if kind == "names":
        if isinstance(expr, Name):
            return (expr.id,)
        if isinstance(expr, ListExpr) and all(isinstance(i, Name) for i in expr.items):
            return tuple(i.id for i in expr.items)
        raise _err(f"{where} must be a variable name or a list of names, got '{unparse(expr)}'", expr)
    try:
        value = literal(expr)
    except ValueError:
        raise _err(f"{where} must be a literal {kind.replace('_', ' ')}, got '{unparse(expr)}'", expr) from None
    ok = {
        "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "number": lambda v: isinstance(v, (int, float)),
        "str": lambda v: isinstance(v, str),
        "bool": lambda v: isinstance(v, (int,)) and v in (0, 1) or isinstance(v, str) and v in ("true", "false"),
        "ints": lambda v: isinstance(v, tuple) and all(isinstance(i, int) for i in v) or isinstance(v, int),
        "int_or_str": lambda v: isinstance(v, (int, str)),
    }[kind]
    if not ok(value):
        raise _err(f"{where} must be {'an' if kind == 'int' else 'a'} {kind.replace('_', ' ')}, got {unparse(expr)}", expr)
    if kind == "number":
        value = float(value)
    if kind == "ints" and isinstance(value, int):
        value = (value,)
    if kind == "bool":
        value = value in (1, "true")
    if param.choices and value not in param.choices and not (kind == "int_or_str" and isinstance(value, int)):
        choices = ", ".join(repr(c) for c in param.choices)
        raise _err(f"{where} must be one of {choices}, got {unparse(expr)}{did_you_mean(str(value), map(str, param.choices))}", expr)
    if kind in ("int", "int_or_str") and isinstance(value, int) and value < 0:
        raise _err(f"{where} must not be negative, got {value}", expr)
    if kind == "ints" and any(v <= 0 for v in value):
        raise _err(f"{where} must hold positive sizes, got {unparse(expr)}", expr)
    ints = value if kind == "ints" else (value,) if kind in ("int", "int_or_str") and isinstance(value, int) else ()
    limit = min(param.limit, MAX_INT_OPTION) if param.limit is not None else MAX_INT_OPTION
    if any(v > limit for v in ints):
        raise _err(f"{where} is too large (at most {limit}), got {unparse(expr)[:40]}", expr)
    if kind == "ints" and len(ints) > MAX_LIST_OPTION:
        raise _err(f"{where} lists too many sizes (at most {MAX_LIST_OPTION}), got {len(ints)}", expr)
    return value


#: what a Stan user who leaves an argument out most likely meant
_MISSING_HINTS = {
    "lkj_corr_cholesky": " (the size K comes first: Stan's lkj_corr_cholesky(eta) is lkj_corr_cholesky(K, eta) "
                         "for a cholesky_factor_corr[K])",
}


def resolve_call(call: Call, signatures: Mapping[str, Signature], category: str | None = None) -> Spec:
    """Resolve ``call`` (optionally requiring a category) against ``signatures`` into a :class:`Spec`."""
    sig = signatures.get(call.func)
    if sig is None or (category is not None and sig.category != category):
        known = _by_category(signatures, category) if category else signatures
        what = category or "function"
        raise _err(f"unknown {what} '{call.func}'{did_you_mean(call.func, known)}", call)
    owner = call.func
    params = list(sig.params)
    values: dict = {}
    if len(call.args) > len(params):
        extra = call.args[len(params)]
        raise _err(f"{owner}() takes at most {len(params)} positional argument(s), got {len(call.args)}", extra)
    problems: list[GenSemanticError] = []  # every bad argument of the call, reported together

    def take(name: str, param, expr: Expr) -> None:
        try:
            values[name] = _value(param, expr, owner, signatures)
        except GenSemanticError as err:
            problems.extend([err, *err.notes])
            values[name] = None

    for p, a in zip(params, call.args):
        take(p.name, p, a)
    for key, a in call.kwargs:
        p = sig.param(key)
        if p is None:
            problems.append(_err(f"{owner}() has no argument '{key}'{did_you_mean(key, [q.name for q in params])}", a))
        elif key in values:
            problems.append(_err(f"{owner}() got argument '{key}' twice", a))
        else:
            take(key, p, a)
    for p in params:
        if p.name not in values:
            if p.default is REQUIRED:
                problems.append(_err(f"{owner}() is missing its argument '{p.name}'{_MISSING_HINTS.get(owner, '')}", call))
            values[p.name] = p.default
    if problems:
        for err in problems:
            err.notes = []
        raise GenSemanticError(problems[0].message, problems[0].span, notes=problems[1:])
    return Spec(sig.name, sig.category, values)
