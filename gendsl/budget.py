"""A documented knob for smoke tests: ``GENDSL_SMOKE=1`` caps every training and sampling budget.

The test suite runs every docs code block and every example with it set, so they execute the
real code paths in seconds. Users never need it.
"""

from __future__ import annotations

import os

__all__ = ["smoke", "cap"]

_CAPS = {"steps": 10, "examples": 2000, "draws": 200, "warmup": 30, "samples": 30, "chains": 2}


def smoke() -> bool:
    """True when ``GENDSL_SMOKE`` is set to a non-empty value other than 0."""
    return os.environ.get("GENDSL_SMOKE", "") not in ("", "0")


def cap(value: int, what: str) -> int:
    """``value``, or its smoke-test cap (``what`` in steps, examples, draws, warmup, samples, chains)."""
    return min(int(value), _CAPS[what]) if smoke() else int(value)
