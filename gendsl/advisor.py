"""The mechanism advisor: which mechanism choices meet a model's inference needs, and why.

Every registered mechanism declares its :class:`~gendsl.mechanisms.base.Choice` list for a
variable type (likelihood kind, network evaluations per sample, conditioning), priced by the
same cost model as ``describe()``; the advisor filters them by the user's needs and says why
each one passes or fails.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass

from gendsl.api import parse
from gendsl.core.ast import unparse
from gendsl.core.model import Model, Variable
from gendsl.core.signatures import Spec
from gendsl.core.types import VarType
from gendsl.errors import GenSemanticError
from gendsl.mechanisms import KINDS, Choice
from gendsl.registry import MECHANISMS

__all__ = ["NEEDS", "Verdict", "advise", "render"]

#: need -> the likelihood kinds that satisfy it
NEEDS = {
    "exact-likelihood": ("exact",),
    "likelihood": ("exact", "estimate"),
    "any-likelihood": ("exact", "estimate", "unnormalized"),
    "sampling": KINDS,
}

#: value of a dimension the caller did not give (as ``describe()`` does)
PLACEHOLDER_DIM = 1
#: forms longer than this are not padded to align the columns of the report
_ALIGN = 72
#: mechanisms in the order the report lists them (others follow by name)
_ORDER = ("leaf", "factorize", "pushforward", "evolve", "distilled", "energy")


def _order(item) -> tuple[int, str]:
    name = item[0]
    return (_ORDER.index(name) if name in _ORDER else len(_ORDER), name)


@dataclass(frozen=True)
class Verdict:
    """One choice for one node: whether it meets the needs, and why not.

    ``form`` is the right-hand side to write for this node (the choice's form, with ``given=``
    the node's conditioning variables when it has any).
    """

    node: str
    choice: Choice
    ok: bool
    reasons: tuple[str, ...]
    form: str = ""


def conditioning(var: Variable) -> tuple[str, ...]:
    """The variables a node is modelled conditionally on: its ``given=`` and a variable ``base=``."""
    if var.spec is None or var.spec.category != "mechanism":
        return ()
    names = tuple(var.spec.get("given", ()) or ())
    base = var.spec.get("base")
    if isinstance(base, str) and base not in names:
        names = (*names, base)
    return names


def learned(var: Variable) -> bool:
    """Whether the node as written learns its distribution from data (a trainable mechanism)."""
    spec = var.spec
    if spec is None or spec.category != "mechanism" or spec.name == "prior":
        return False
    if spec.name == "energy":
        base = spec.get("base")
        return isinstance(spec["E"], Spec) or (isinstance(base, Spec) and base.category == "mechanism")
    return True


def with_given(form: str, names: tuple[str, ...]) -> str:
    """``form`` with ``given=names`` as its last argument (after it, in parentheses, when it is
    not a call, e.g. a distillation step)."""
    if not names:
        return form
    value = names[0] if len(names) == 1 else "[" + ", ".join(names) + "]"
    return f"{form[:-1]}, given={value})" if form.endswith(")") else f"{form} (given={value})"


def advise(model: Model, need: str = "sampling", max_nfe: int | None = None, dims: dict | None = None) -> list[Verdict]:
    """Judge every declared mechanism choice for every modelled variable of ``model``.

    Parameters
    ----------
    need:
        One of :data:`NEEDS`: ``exact-likelihood``, ``likelihood`` (exact or estimated),
        ``any-likelihood`` (unnormalized allowed) or ``sampling``.
    max_nfe:
        Largest number of network evaluations per sample allowed (None: no limit).
    dims:
        Values of symbolic dimensions (for costs that depend on the size); a missing one is
        taken as :data:`PLACEHOLDER_DIM`, as ``describe()`` does.

    Returns
    -------
    One :class:`Verdict` per (variable, choice), variables in topological order.
    """
    if need not in NEEDS:
        raise GenSemanticError(f"unknown need '{need}' (known: {', '.join(NEEDS)})")
    if max_nfe is not None and max_nfe < 0:
        raise GenSemanticError(f"the largest number of network evaluations must be >= 0, got {max_nfe}")
    bound = {**{s: PLACEHOLDER_DIM for s in model.symbols}, **(dims or {})}
    out = []
    for var in model.by_role("observed", "latent"):
        vtype = var.type.bind(bound)
        given = conditioning(var)
        for _, cls in sorted(MECHANISMS.items(), key=_order):
            for choice in map(functools.partial(price, vtype=vtype), cls.choices(vtype)):
                reasons = _reasons(choice, need, max_nfe, bool(given), learned(var))
                form = with_given(choice.form, given) if choice.conditional else choice.form
                if not choice.learned and var.mechanism == "leaf":
                    form = unparse(var.rhs)  # the fixed distribution it already has
                out.append(Verdict(var.name, choice, not reasons, tuple(reasons), form))
    return out


def price(choice: Choice, vtype: VarType) -> Choice:
    """``choice`` with its likelihood kind and cost, from the mechanism its form names (a choice
    already priced is returned as it is)."""
    if choice.likelihood is not None and choice.nfe is not None:
        return choice
    spec = _resolve(choice.form, vtype)
    mechanism = MECHANISMS[spec.name]
    return dataclasses.replace(choice, likelihood=mechanism.static_kind(spec),
                               nfe=mechanism.static_cost(spec, vtype, MECHANISMS))


@functools.lru_cache(maxsize=None)
def _resolve(form: str, vtype: VarType) -> Spec:
    """The resolved spec of the right-hand side ``form`` for a variable of type ``vtype``, through
    the same front end and checks as a ``.gen`` file."""
    return parse(f"model choice {{\n  x: {vtype} ~ {form}\n}}\n", file="<choice>")["x"].spec


def _reasons(choice: Choice, need: str, max_nfe: int | None, conditional: bool, is_learned: bool) -> list[str]:
    reasons = []
    if choice.likelihood not in NEEDS[need]:
        reasons.append(f"likelihood is {choice.likelihood}, {need} needs {' or '.join(NEEDS[need])}")
    if max_nfe is not None and choice.nfe > max_nfe:
        reasons.append(f"{_evaluations(choice.nfe)} per sample > {max_nfe}")
    if conditional and not choice.conditional:
        reasons.append("cannot take given= (this variable is conditional)")
    if is_learned and not choice.learned:
        reasons.append("a fixed distribution learns nothing from the data (this variable is learned)")
    return reasons


def _evaluations(n: int) -> str:
    return f"{n} network evaluation{'' if n == 1 else 's'}"


def render(verdicts: list[Verdict], need: str, max_nfe: int | None, model: Model | None = None,
           dims: dict | None = None) -> str:
    """A readable report: per node, the choices that meet the needs, then those that do not.

    With ``model``, each node's heading shows its type, what models it now and its conditioning,
    and dimensions missing from ``dims`` are named.
    """
    limit = f", at most {_evaluations(max_nfe)} per sample" if max_nfe is not None else ""
    lines = [f"needs: {need} (likelihood {' or '.join(NEEDS[need])}){limit}"]
    if model is not None:
        missing = sorted(model.symbols - set(dims or {}))
        if missing:
            lines.append(f"sizes use {', '.join(f'{m} = {PLACEHOLDER_DIM}' for m in missing)} "
                         f"(give them with --dim NAME=N)")
    for node in dict.fromkeys(v.node for v in verdicts):
        mine = [v for v in verdicts if v.node == node]
        lines.append("")
        lines.append(_heading(node, model))
        good = [v for v in mine if v.ok]
        if not good:
            lines.append("  no mechanism meets these needs")
        width = min(max((len(v.form) for v in good), default=0), _ALIGN)
        for v in good:
            lines.append(f"  ok  {v.form.ljust(width)}  [{v.choice.likelihood}, {v.choice.nfe} nfe]  {v.choice.note}")
        for v in mine:
            if not v.ok:
                lines.append(f"  no  {v.form}  [{v.choice.likelihood}, {v.choice.nfe} nfe]: {'; '.join(v.reasons)}")
    return "\n".join(lines)


def _heading(node: str, model: Model | None) -> str:
    if model is None:
        return f"{node}:"
    var = model[node]
    given = conditioning(var)
    now = var.mechanism if var.mechanism != "leaf" else var.spec.name
    return f"{node}: {var.type} ({var.role}; now {now}" + (f", given {', '.join(given)}" if given else "") + ")"
