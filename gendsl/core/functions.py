"""Built-in functions of the expression language: their arity and how result shapes follow.

Pure Python (the JAX implementations live in :mod:`gendsl.numerics.expr`). A shape rule takes
the argument shapes (and the literal integer arguments, for ``eye``) and returns the result
shape, or raises ``ValueError`` with a message for the user.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from gendsl.core.types import Shape, broadcast_shapes, shape_str

__all__ = ["Function", "FUNCTIONS"]


@dataclass(frozen=True)
class Function:
    name: str
    nargs: tuple[int, int]  # min, max positional arguments
    rule: Callable[[list[Shape], list], Shape]
    doc: str = ""


def _elementwise(shapes, _lits):
    return broadcast_shapes(*shapes)


def _reduce(shapes, _lits):
    return ()


def _reduce_last(shapes, _lits):
    return shapes[0][:-1]


def _transpose(shapes, _lits):
    return tuple(reversed(shapes[0]))


def _square(shapes, _lits):
    s = shapes[0]
    if len(s) < 2:
        raise ValueError(f"needs a matrix, got shape {shape_str(s)}")
    return s


def _dot(shapes, _lits):
    a, b = shapes
    if not a or not b:
        return broadcast_shapes(a, b)
    if a[-1] != b[0 if len(b) == 1 else -2] and 1 not in (a[-1],):
        raise ValueError(f"shapes {shape_str(a)} and {shape_str(b)} are not aligned for dot")
    if len(b) == 1:
        return a[:-1]
    return a[:-1] + b[:-2] + b[-1:]


def _eye(shapes, lits):
    n = lits[0]
    if n is None:
        raise ValueError("eye(n) needs an integer literal or the name of an int input")
    return (n, n)


def _concat(shapes, _lits):
    if any(len(s) != 1 for s in shapes):
        raise ValueError("concat joins vectors")
    dims = [s[0] for s in shapes]
    if all(isinstance(d, int) for d in dims):
        return (sum(dims),)
    raise ValueError("concat needs vectors of known length")


_UNARY = ["exp", "log", "sqrt", "abs", "sigmoid", "tanh", "softplus", "log1p", "expm1", "sin", "cos",
          "logit", "square", "inv_logit", "floor", "ceil", "lgamma", "digamma", "erf", "log_sigmoid", "sign"]

FUNCTIONS: dict[str, Function] = {
    **{n: Function(n, (1, 1), _elementwise) for n in _UNARY},
    "pow": Function("pow", (2, 2), _elementwise),
    "min": Function("min", (2, 2), _elementwise, "elementwise minimum"),
    "max": Function("max", (2, 2), _elementwise, "elementwise maximum"),
    "where": Function("where", (3, 3), _elementwise),
    "sum": Function("sum", (1, 1), _reduce),
    "mean": Function("mean", (1, 1), _reduce),
    "prod": Function("prod", (1, 1), _reduce),
    "logsumexp": Function("logsumexp", (1, 1), _reduce),
    "sum_last": Function("sum_last", (1, 1), _reduce_last),
    "softmax": Function("softmax", (1, 1), _elementwise),
    "dot": Function("dot", (2, 2), _dot),
    "matmul": Function("matmul", (2, 2), _dot),
    "transpose": Function("transpose", (1, 1), _transpose),
    "cholesky": Function("cholesky", (1, 1), _square),
    "inverse": Function("inverse", (1, 1), _square),
    "eye": Function("eye", (1, 1), _eye),
    "concat": Function("concat", (1, 8), _concat),
}
