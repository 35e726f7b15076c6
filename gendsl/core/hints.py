"""Hints for names a user may bring from elsewhere: Stan spellings of functions and log-densities.

Pure Python; the check appends :func:`function_hint` to "unknown function" messages.
"""

from __future__ import annotations

import difflib

from gendsl.core.catalog import Catalog
from gendsl.core.functions import FUNCTIONS, STAN_NAMES
from gendsl.errors import did_you_mean

__all__ = ["function_hint", "DENSITY_SUFFIXES"]

#: Stan's suffixes of log-density functions (``normal_lpdf``)
DENSITY_SUFFIXES = ("_lpdf", "_lpmf", "_lupdf", "_lupmf")


def function_hint(name: str, catalog: Catalog) -> str:
    """What to write instead of the unknown function ``name`` ("" when nothing is close)."""
    if name in STAN_NAMES:
        return f"; Stan's {name} is written {STAN_NAMES[name]}"
    for suffix in DENSITY_SUFFIXES:
        base = name.removesuffix(suffix)
        if base != name:
            known = catalog.by_category("distribution")
            family = base if base in known else next(iter(difflib.get_close_matches(base, known, n=1)), "DIST")
            return f"; Stan's {name}(y | ...) is written logpdf({family}(...), y)"
    sig = catalog.signatures.get(name)
    if sig is not None:
        more = f"; its log-density is logpdf({name}(...), y)" if sig.category == "distribution" else ""
        return f" ({name} is a {sig.category}, not a function{more})"
    return did_you_mean(name, FUNCTIONS)
