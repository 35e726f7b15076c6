"""The data set record every loader returns."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["Dataset"]


@dataclass(frozen=True)
class Dataset:
    """A data set: arrays keyed by variable name.

    Attributes
    ----------
    name:
        Where it came from (``"moons"``, a file path...).
    arrays:
        Variable name -> array; per-example variables have a leading example axis ``(n, ...)``,
        scalars (such as a size ``J``) are 0-d arrays.
    true_nll:
        The exact entropy of the data distribution in nats per example when known, else None.
    """

    name: str
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    true_nll: float | None = None


