"""Generate the reference tables of docs/language.md from the registries, so they cannot drift.

    python -m gendsl.docgen           # rewrite docs/language.md from docs/language.md.in
"""

from __future__ import annotations

from pathlib import Path

from gendsl.core.functions import FUNCTIONS
from gendsl.core.signatures import REQUIRED
from gendsl.lang.grammar import grammar_text
from gendsl.registry import CATALOG

__all__ = ["render_language_reference", "main"]

_CATEGORY_TITLES = {"network": "Networks", "map": "Maps (pushforward)", "process": "Processes (evolve)",
                    "sampler": "Samplers (evolve)", "kernel": "MCMC kernels (energy)",
                    "objective": "Training objectives (energy)"}


def _signature(sig) -> str:
    parts = []
    for p in sig.params:
        if p.default is REQUIRED:
            parts.append(p.name)
        else:
            d = p.default
            d = (f'"{d}"' if isinstance(d, str) else str(d).lower() if isinstance(d, bool)
                 else list(d) if isinstance(d, tuple) else d)
            parts.append(f"{p.name}={d}")
    return f"`{sig.name}({', '.join(parts)})`"


def _arity(nargs: tuple[int, int]) -> str:
    lo, hi = nargs
    return str(lo) if lo == hi else f"{lo} to {hi}"


def render_language_reference(template: str) -> str:
    """Fill the FUNCTIONS / DISTRIBUTIONS / MECHANISMS / OPTIONS / GRAMMAR slots of the template."""
    functions = "\n".join(f"| `{f.usage}` | {_arity(f.nargs)} | {f.doc} |" for _, f in sorted(FUNCTIONS.items()))
    dists = ", ".join(_signature(s) for s in CATALOG.by_category("distribution").values())
    mechs = "\n".join(f"- {_signature(s)}: {s.doc}" for s in CATALOG.by_category("mechanism").values())
    options = []
    for cat, title in _CATEGORY_TITLES.items():
        options.append(f"**{title}**\n")
        options += [f"- {_signature(s)}" + (f": {s.doc}" if s.doc else "") for s in CATALOG.by_category(cat).values()]
        options.append("")
    out = template

    for slot, text in [("FUNCTIONS", functions), ("DISTRIBUTIONS", dists), ("MECHANISMS", mechs),
                       ("OPTIONS", "\n".join(options).rstrip()), ("GRAMMAR", grammar_text())]:
        out = out.replace(slot, text, 1)
    return out


def main() -> None:
    docs = Path(__file__).resolve().parent.parent / "docs"
    (docs / "language.md").write_text(render_language_reference((docs / "language.md.in").read_text()))


if __name__ == "__main__":
    main()
