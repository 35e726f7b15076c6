"""Variable types: a base (real, positive, unit, int, token) and an event shape.

A dimension is an ``int`` or the name of an ``int`` input (``real[J]``); such symbolic
dimensions are bound when data arrive (:meth:`VarType.bind`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Union

__all__ = ["Dim", "Shape", "VarType", "BASES", "broadcast_shapes", "shape_str"]

Dim = Union[int, str]
Shape = tuple[Dim, ...]

#: base name -> (is_discrete, numpyro constraint name)
BASES = {
    "real": (False, "real"),
    "positive": (False, "positive"),
    "unit": (False, "unit_interval"),
    "int": (True, "integer"),
    "token": (True, "token"),
}


def shape_str(shape: Shape) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]" if shape else "scalar"


@dataclass(frozen=True)
class VarType:
    """The type of a variable: ``base`` and event ``shape``; ``vocab`` for tokens."""

    base: str
    shape: Shape = ()
    vocab: Dim | None = None

    @property
    def discrete(self) -> bool:
        return BASES[self.base][0]

    @property
    def symbols(self) -> set[str]:
        out = {d for d in self.shape if isinstance(d, str)}
        if isinstance(self.vocab, str):
            out.add(self.vocab)
        return out

    def bind(self, dims: Mapping[str, int]) -> "VarType":
        """Replace symbolic dimensions by their values in ``dims``."""
        shape = tuple(dims.get(d, d) if isinstance(d, str) else d for d in self.shape)
        vocab = dims.get(self.vocab, self.vocab) if isinstance(self.vocab, str) else self.vocab
        return VarType(self.base, shape, vocab)

    def __str__(self) -> str:
        dims = "[" + ", ".join(str(d) for d in self.shape) + "]" if self.shape else ""
        if self.base == "token":
            return f"token{dims} of {self.vocab}"
        return f"{self.base}{dims}"


def broadcast_shapes(*shapes: Shape) -> Shape:
    """NumPy broadcasting over shapes whose dimensions may be symbols.

    Raises ``ValueError`` with both shapes when they do not broadcast.
    """
    ndim = max((len(s) for s in shapes), default=0)
    out: list[Dim] = []
    for axis in range(ndim):
        dims = [s[len(s) - ndim + axis] for s in shapes if len(s) - ndim + axis >= 0]
        chosen: Dim = 1
        for d in dims:
            if d == 1:
                continue
            if chosen == 1:
                chosen = d
            elif chosen != d:
                raise ValueError(
                    "shapes " + " and ".join(shape_str(s) for s in shapes) + " do not broadcast"
                )
        out.append(chosen)
    return tuple(out)
