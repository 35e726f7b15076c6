"""The bijection table: every bijective map of the language, one line each.

A new bijective map is one file (its :class:`~gendsl.mechanisms.pushforward.bijection.AbstractBijection`
layers, its signature and builder as ``BIJECTION``) plus one line here; ``pushforward`` then models
with it and the generic bijection tests cover it.
"""

from __future__ import annotations

from gendsl.core.catalog import Table
from gendsl.mechanisms.pushforward import coupling, maf, spline

__all__ = ["BIJECTIONS"]

#: map name -> :class:`~gendsl.mechanisms.pushforward.bijection.Bijection`
BIJECTIONS = Table("bijective map", {
    "coupling": coupling.BIJECTION,
    "spline": spline.BIJECTION,
    "maf": maf.BIJECTION,
})
