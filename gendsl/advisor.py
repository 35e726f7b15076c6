"""The mechanism advisor: which mechanism choices meet a model's inference needs, and why.

Every registered mechanism declares its :class:`~gendsl.mechanisms.base.Choice` list for a
variable type (likelihood kind, network evaluations per sample, conditioning); the advisor
filters them by the user's needs and says why each one passes or fails.
"""

from __future__ import annotations

from dataclasses import dataclass

from gendsl.errors import GenSemanticError
from gendsl.ir.model import Model
from gendsl.mechanisms.base import KINDS, Choice, registered

__all__ = ["NEEDS", "Verdict", "advise", "render"]

#: need -> the likelihood kinds that satisfy it
NEEDS = {
    "exact-likelihood": ("exact",),
    "likelihood": ("exact", "estimate"),
    "any-likelihood": ("exact", "estimate", "unnormalized"),
    "sampling": KINDS,
}


@dataclass(frozen=True)
class Verdict:
    node: str
    choice: Choice
    ok: bool
    reasons: tuple[str, ...]


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
        Values of symbolic dimensions (for costs that depend on the size).
    """
    if need not in NEEDS:
        raise GenSemanticError(f"unknown need '{need}' (known: {', '.join(NEEDS)})")
    out = []
    for var in model.by_role("observed", "latent"):
        vtype = var.type.bind(dims or {})
        conditional = bool(var.spec.get("given")) if var.spec is not None else False
        for name, cls in sorted(registered().items()):
            for choice in cls.choices(vtype):
                reasons = []
                if choice.likelihood not in NEEDS[need]:
                    reasons.append(f"likelihood is {choice.likelihood}, {need} needs {' or '.join(NEEDS[need])}")
                if max_nfe is not None and choice.nfe > max_nfe:
                    reasons.append(f"{choice.nfe} network evaluations per sample > {max_nfe}")
                if conditional and not choice.conditional:
                    reasons.append("cannot take given=")
                out.append(Verdict(var.name, choice, not reasons, tuple(reasons)))
    return out


def render(verdicts: list[Verdict], need: str, max_nfe: int | None) -> str:
    """A readable report: per node, the choices that meet the needs, then those that do not."""
    lines = [f"needs: {need}" + (f", at most {max_nfe} network evaluations per sample" if max_nfe is not None else "")]
    for node in dict.fromkeys(v.node for v in verdicts):
        mine = [v for v in verdicts if v.node == node]
        lines.append(f"\n{node}:")
        good = [v for v in mine if v.ok]
        if not good:
            lines.append("  no mechanism meets these needs")
        for v in good:
            lines.append(f"  ok   {v.choice.form}  [{v.choice.likelihood}, {v.choice.nfe} nfe] {v.choice.note}")
        for v in mine:
            if not v.ok:
                lines.append(f"  no   {v.choice.form}: {'; '.join(v.reasons)}")
    return "\n".join(lines)
