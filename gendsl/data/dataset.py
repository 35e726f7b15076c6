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
    groups:
        ``(n,)`` ints, or None: examples of one group come from one source item (the digits'
        image, before dequantisation noise) and are held out together, so that held-out and
        training examples never share one.
    """

    name: str
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    true_nll: float | None = None
    groups: np.ndarray | None = None


