"""The plan of a compiled model as text: one row per node, then the joint."""

from __future__ import annotations

from gendsl.core.ast import unparse
from gendsl.mechanisms.base import weakest_kind

__all__ = ["describe", "plan_rows"]

_COLUMNS = ("node", "role", "type", "mechanism", "parents", "loss", "likelihood", "sampler", "cost")


def plan_rows(lowered) -> list[dict[str, str]]:
    """One dict per variable (and per ``target +=`` term) with the columns of the plan."""
    rows = []
    for node in lowered.nodes:
        var = node.var
        row = {"node": var.name, "role": var.scope or var.role, "type": str(var.type), "parents": ", ".join(var.parents) or "-"}
        if node.mechanism is not None:
            row.update(node.mechanism.describe())
            if row["mechanism"] is None:  # the node is described by its right-hand side as written
                row["mechanism"] = unparse(var.rhs)
            if var.scope == "generated":  # drawn per draw, outside the density: neither trained nor scored
                row.update(loss="-", likelihood="-")
        elif var.role == "deterministic":
            row.update(mechanism="= " + unparse(var.rhs), loss="-", likelihood="-", sampler="-", cost="0")
        else:
            row.update(mechanism="input", loss="-", likelihood="-", sampler="-", cost="0")
        rows.append(row)
    for factor in lowered.factors:
        rows.append({"node": "target", "role": "factor", "type": "real", "mechanism": "+= " + unparse(factor.factor.expr),
                     "parents": ", ".join(factor.parents) or "-", "loss": "-", "likelihood": "-", "sampler": "-",
                     "cost": "0"})
    return rows


def describe(lowered) -> str:
    """Render the plan as an aligned table with the joint's likelihood kind and cost."""
    rows = plan_rows(lowered)
    widths = {c: max(len(c), *(len(r[c]) for r in rows)) for c in _COLUMNS}
    widths["mechanism"] = min(widths["mechanism"], 60)

    def cell(r, c):
        text = r[c]
        return (text[: widths[c] - 3] + "...") if len(text) > widths[c] else text.ljust(widths[c])

    lines = [f"model {lowered.model.name}", "  ".join(c.ljust(widths[c]) for c in _COLUMNS).rstrip()]
    lines.append("  ".join("-" * widths[c] for c in _COLUMNS))
    lines += ["  ".join(cell(r, c) for c in _COLUMNS).rstrip() for r in rows]
    kind = weakest_kind(n.mechanism.kind for n in lowered.modelled)
    cost = sum(n.mechanism.cost() for n in lowered.stochastic)
    lines.append(f"joint: log_prob kind = {kind}; network evaluations per joint sample = {cost}")
    return "\n".join(lines)
