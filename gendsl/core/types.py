"""Variable types: a base (real, positive, unit, int, token, or a constrained vector or matrix
type) and an event shape, with optional bounds (``real<lower=0, upper=1>``).

A dimension is an ``int`` or the name of an ``int`` input (``real[J]``), or, for quantities
the check infers (slices such as ``y[1:]``), such a name with an integer offset (``"T-1"``);
symbolic dimensions are bound when data arrive (:meth:`VarType.bind`). The constrained types name the
numpyro constraint of their support (:data:`BASES`); a latent of such a type lives in the
unconstrained space of that constraint's ``biject_to`` transform during inference.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Mapping, Union

from gendsl.core.ast import Expr, unparse

__all__ = ["Dim", "Shape", "VarType", "ELEMENT_LIMIT", "oversized", "BASES", "VECTOR_BASES", "MATRIX_BASES", "broadcast_shapes", "shape_str",
           "dim_parts", "offset_dim", "bind_dim"]

Dim = Union[int, str]
Shape = tuple[Dim, ...]

#: base name -> (is_discrete, numpyro constraint name)
BASES = {
    "real": (False, "real"),
    "positive": (False, "positive"),
    "unit": (False, "unit_interval"),
    "int": (True, "integer"),
    "token": (True, "token"),
    "ordered": (False, "ordered_vector"),
    "positive_ordered": (False, "positive_ordered_vector"),
    "simplex": (False, "simplex"),
    "sum_to_zero": (False, "zero_sum"),
    "cholesky_factor_corr": (False, "corr_cholesky"),
    "corr_matrix": (False, "corr_matrix"),
    "cov_matrix": (False, "positive_definite"),
}

#: constrained vector types: ``ordered[K]`` is one vector of length K
VECTOR_BASES = ("ordered", "positive_ordered", "simplex", "sum_to_zero")
#: constrained matrix types: ``cov_matrix[K]`` is one K x K matrix
MATRIX_BASES = ("cholesky_factor_corr", "corr_matrix", "cov_matrix")


_SYMBOLIC = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)([+-]\d+)?$")


def dim_parts(d: str) -> tuple[str, int]:
    """``"T-1" -> ("T", -1)``, ``"J" -> ("J", 0)``."""
    name, offset = _SYMBOLIC.match(d).groups()
    return name, int(offset or 0)


def offset_dim(d: Dim, delta: int) -> Dim:
    """The dimension ``d + delta``: ``offset_dim("T", -1) == "T-1"``, ``offset_dim(5, -1) == 4``."""
    if isinstance(d, int):
        return d + delta
    name, offset = dim_parts(d)
    offset += delta
    return f"{name}{offset:+d}" if offset else name


def bind_dim(d: Dim, dims: Mapping[str, int]) -> Dim:
    """``d`` with its name replaced by its value in ``dims`` (unchanged when the name is unknown)."""
    if isinstance(d, int):
        return d
    name, offset = dim_parts(d)
    return dims[name] + offset if name in dims else d


#: most numbers one variable holds (per example): beyond it its arrays cannot be allocated on one
#: device, and an index into it no longer fits int32
ELEMENT_LIMIT = 2**27


def oversized(name: str, shape: Shape) -> str | None:
    """Why a variable of ``shape`` (its integer axes: a named one is not known yet) is too large,
    or None when its known axes hold at most :data:`ELEMENT_LIMIT` numbers."""
    size = 1
    for d in shape:
        size *= d if isinstance(d, int) else 1
    if size <= ELEMENT_LIMIT:
        return None
    return (f"'{name}' holds {size:,} numbers (shape {shape_str(shape)}), more than the {ELEMENT_LIMIT:,} a variable "
            f"may hold: its arrays would not fit in memory; make it smaller")


def shape_str(shape: Shape) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]" if shape else "scalar"


@dataclass(frozen=True)
class VarType:
    """The type of a variable: ``base`` and event ``shape``; ``vocab`` for tokens; ``lower`` and
    ``upper`` bounds (expressions, each optional) for ``real<lower=a, upper=b>`` and ``int<...>``."""

    base: str
    shape: Shape = ()
    vocab: Dim | None = None
    lower: Expr | None = None
    upper: Expr | None = None

    @property
    def constrained(self) -> bool:
        """Whether the type itself restricts the support (bounds or a constrained base), beyond
        what its base ``real``, ``positive`` or ``unit`` says."""
        return self.lower is not None or self.upper is not None or self.base in (*VECTOR_BASES, *MATRIX_BASES)

    @property
    def compact(self) -> bool:
        """Whether the support is bounded (a flat prior on it is proper): both bounds given, or a
        base whose values are bounded (``unit``, ``simplex``, ``cholesky_factor_corr``, ``corr_matrix``)."""
        bounded = self.base in ("unit", "simplex", "cholesky_factor_corr", "corr_matrix")
        return bounded or (self.lower is not None and self.upper is not None)

    @property
    def discrete(self) -> bool:
        return BASES[self.base][0]

    @property
    def symbols(self) -> set[str]:
        out = {dim_parts(d)[0] for d in self.shape if isinstance(d, str)}
        if isinstance(self.vocab, str):
            out.add(self.vocab)
        return out

    def bind(self, dims: Mapping[str, int]) -> "VarType":
        """Replace symbolic dimensions by their values in ``dims``."""
        shape = tuple(bind_dim(d, dims) for d in self.shape)
        vocab = dims.get(self.vocab, self.vocab) if isinstance(self.vocab, str) else self.vocab
        return VarType(self.base, shape, vocab, self.lower, self.upper)

    def __str__(self) -> str:
        shape = self.shape[:1] if self.base in MATRIX_BASES else self.shape
        dims = "[" + ", ".join(str(d) for d in shape) + "]" if shape else ""
        if self.base == "token":
            return f"token{dims} of {self.vocab}"
        bounds = [f"{k}={unparse(v)}" for k, v in (("lower", self.lower), ("upper", self.upper)) if v is not None]
        return f"{self.base}{'<' + ', '.join(bounds) + '>' if bounds else ''}{dims}"


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
