"""Built-in functions of the expression language: their arity, meaning and how result shapes follow.

Pure Python (the JAX implementations live in :mod:`gendsl.numerics.expr`). A shape rule takes
the argument shapes, the literal integer arguments (for ``eye``) and the reduction axis (see
:func:`reduction_axis`) and returns the result shape, or raises ``ValueError`` with a message
for the user.

Reductions (``sum mean prod logsumexp max min``) reduce over every axis of their argument, or
over ``axis=k`` only. ``logsumexp`` of a list literal ``[a, b, ...]`` combines the items
elementwise (over their broadcast shape): ``logsumexp([lp1, lp2])`` is
``log(exp(lp1) + exp(lp2))`` per element, as a mixture needs (Stan's ``log_sum_exp(a, b)``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from gendsl.core.ast import Call, ListExpr, Num, Str, Unary
from gendsl.core.types import Shape, broadcast_shapes, shape_str

__all__ = ["Function", "FUNCTIONS", "STAN_NAMES", "TAKES_FUNCTION", "STAN_ODES", "ODE_SOLVERS", "ode_options",
           "reduction_axis", "literal_axis"]


@dataclass(frozen=True)
class Function:
    """A built-in function.

    Attributes
    ----------
    name, nargs:
        Its name and the least and most positional arguments.
    rule:
        ``rule(shapes, literal_ints, axis) -> shape`` of the result.
    usage, doc:
        How it is called and what it means (the reference in docs/language.md).
    keywords:
        The keyword arguments it takes (``axis``).
    takes_distribution:
        Its first argument is a distribution call, as in ``logpdf(normal(0, 1), y)``.
    over_items:
        Given one list literal, it reduces across the items only (``logsumexp([lp1, lp2])``).
    """

    name: str
    nargs: tuple[int, int]  # min, max positional arguments
    rule: Callable[[list[Shape], list, int | None], Shape]
    doc: str = ""
    usage: str = ""
    keywords: tuple[str, ...] = ()
    takes_distribution: bool = False
    over_items: bool = False


def literal_axis(expr) -> int | None:
    """The integer an ``axis=`` literal holds (``-1`` included), else None."""
    if isinstance(expr, Unary) and isinstance(expr.operand, Num) and isinstance(expr.operand.value, int):
        return -expr.operand.value
    if isinstance(expr, Num) and isinstance(expr.value, int):
        return expr.value
    return None


def reduction_axis(call: Call) -> int | None:
    """The axis a reduction ``call`` reduces: its ``axis=`` literal; 0 (across the items) for
    ``logsumexp`` of one list literal; else None (every axis)."""
    axis = call.kwarg("axis")
    if axis is not None:
        return literal_axis(axis)
    fn = FUNCTIONS.get(call.func)
    if fn is not None and fn.over_items and len(call.args) == 1 and isinstance(call.args[0], ListExpr):
        return 0
    return None


def ode_options(call: Call) -> dict:
    """The options of an ``ode(...)`` call, defaults filled in: ``solver``, ``rtol``, ``atol``, ``max_steps``.

    Raises ``ValueError`` with a message for the user when one is not a literal of its kind.
    """
    out = {"solver": "tsit5", "rtol": 1e-6, "atol": 1e-6, "max_steps": 4096}
    for key, value in call.kwargs:
        if key == "solver":
            if not isinstance(value, Str) or value.value not in ODE_SOLVERS:
                raise ValueError(f"solver= must be one of {', '.join(map(repr, ODE_SOLVERS))} (kvaerno5 for a stiff "
                                 f"system)")
            out[key] = value.value
        elif key == "max_steps":
            if not isinstance(value, Num) or not isinstance(value.value, int) or value.value <= 0:
                raise ValueError("max_steps= must be a positive integer literal")
            out[key] = value.value
        else:
            if not isinstance(value, Num) or value.value <= 0:
                raise ValueError(f"{key}= must be a positive number literal, e.g. {key}=1e-6")
            out[key] = float(value.value)
    return out


def _elementwise(shapes, _lits, _axis):
    return broadcast_shapes(*shapes)


def _normal_axis(shape: Shape, axis: int) -> int:
    if not -len(shape) <= axis < len(shape):
        raise ValueError(f"axis {axis} is out of range for shape {shape_str(shape)}")
    return axis % len(shape)


def _reduce(shapes, _lits, axis):
    if axis is None:
        return ()
    s = shapes[0]
    k = _normal_axis(s, axis)
    return s[:k] + s[k + 1:]


def _reduce_or_elementwise(shapes, lits, axis):
    """``max(x)`` reduces; ``max(a, b)`` is elementwise."""
    if len(shapes) == 2:
        if axis is not None:
            raise ValueError("the elementwise form max(a, b) takes no axis")
        return broadcast_shapes(*shapes)
    return _reduce(shapes, lits, axis)


def _cumulative(shapes, _lits, axis):
    s = shapes[0]
    if not s:
        raise ValueError("needs a vector or an array, got a scalar")
    _normal_axis(s, 0 if axis is None else axis)
    return s


def _reduce_last(shapes, _lits, _axis):
    return shapes[0][:-1]


def _transpose(shapes, _lits, _axis):
    return tuple(reversed(shapes[0]))


def _square(shapes, _lits, _axis):
    s = shapes[0]
    if len(s) < 2:
        raise ValueError(f"needs a matrix, got shape {shape_str(s)}")
    return s


def _dot(shapes, _lits, _axis):
    a, b = shapes
    if not a or not b:
        return broadcast_shapes(a, b)
    if a[-1] != b[0 if len(b) == 1 else -2] and 1 not in (a[-1],):
        raise ValueError(f"shapes {shape_str(a)} and {shape_str(b)} are not aligned for dot")
    if len(b) == 1:
        return a[:-1]
    return a[:-1] + b[:-2] + b[-1:]


def _eye(shapes, lits, _axis):
    n = lits[0]
    if n is None:
        raise ValueError("eye(n) needs an integer literal or the name of an int input")
    return (n, n)


def _diag_matrix(shapes, _lits, _axis):
    if len(shapes[0]) != 1:
        raise ValueError(f"needs a vector, got shape {shape_str(shapes[0])}")
    return shapes[0] * 2


def _diag_multiply(shapes, _lits, _axis, pre: bool):
    v, m = shapes if pre else shapes[::-1]
    if len(v) != 1 or len(m) != 2:
        raise ValueError(f"needs a vector and a matrix, got shapes {shape_str(v)} and {shape_str(m)}")
    if v[0] != m[0 if pre else 1] and 1 not in (v[0], m[0 if pre else 1]):
        raise ValueError(f"the vector's length {v[0]} is not the matrix's number of {'rows' if pre else 'columns'} "
                         f"({shape_str(m)})")
    return m


def _concat(shapes, _lits, _axis):
    if any(len(s) != 1 for s in shapes):
        raise ValueError("concat joins vectors")
    dims = [s[0] for s in shapes]
    if all(isinstance(d, int) for d in dims):
        return (sum(dims),)
    raise ValueError("concat needs vectors of known length")


def _log_mix(shapes, _lits, _axis):
    """``log_mix(theta, lp1, lp2)`` elementwise; ``log_mix(theta[K], lps[K, ...])`` over the first axis of lps."""
    if len(shapes) == 3:
        return broadcast_shapes(*shapes)
    theta, lps = shapes
    if len(theta) != 1 or not lps or (lps[0] != theta[0] and 1 not in (lps[0], theta[0])):
        raise ValueError(f"with two arguments, theta must have shape [K] and lps shape [K, ...], got "
                         f"{shape_str(theta)} and {shape_str(lps)}")
    return lps[1:]


def _unused(shapes, _lits, _axis):  # logpdf, ode, scan: the check computes their shapes (gendsl.core.shapes)
    raise AssertionError("the shape of logpdf, ode and scan comes from their arguments")


_UNARY = {
    "exp": "exponential", "log": "natural logarithm", "sqrt": "square root", "abs": "absolute value",
    "sigmoid": "logistic sigmoid 1 / (1 + exp(-x))", "inv_logit": "sigmoid (Stan's name for it)", "tanh": "hyperbolic tangent",
    "softplus": "log(1 + exp(x))", "log1p": "log(1 + x)", "expm1": "exp(x) - 1", "sin": "sine", "cos": "cosine",
    "logit": "log(x / (1 - x))", "square": "x * x", "floor": "round down", "ceil": "round up",
    "lgamma": "log of the gamma function", "digamma": "derivative of lgamma", "erf": "error function",
    "log_sigmoid": "log(sigmoid(x))", "sign": "sign: -1, 0 or 1",
}

_REDUCTION = "over every axis, or over axis=k only"


def _fn(name, nargs, rule, usage, doc, **kw) -> Function:
    return Function(name, nargs, rule, doc, usage, **kw)


FUNCTIONS: dict[str, Function] = {
    **{n: _fn(n, (1, 1), _elementwise, f"{n}(x)", f"elementwise {d}") for n, d in _UNARY.items()},
    "pow": _fn("pow", (2, 2), _elementwise, "pow(x, y)", "elementwise x^y"),
    "min": _fn("min", (1, 2), _reduce_or_elementwise, "min(x, axis=k) or min(a, b)",
               f"min(x): the smallest element, {_REDUCTION}; min(a, b): elementwise minimum", keywords=("axis",)),
    "max": _fn("max", (1, 2), _reduce_or_elementwise, "max(x, axis=k) or max(a, b)",
               f"max(x): the largest element, {_REDUCTION}; max(a, b): elementwise maximum", keywords=("axis",)),
    "where": _fn("where", (3, 3), _elementwise, "where(c, a, b)", "a where c is non-zero, else b (elementwise)"),
    "sum": _fn("sum", (1, 1), _reduce, "sum(x, axis=k)", f"sum {_REDUCTION}", keywords=("axis",)),
    "mean": _fn("mean", (1, 1), _reduce, "mean(x, axis=k)", f"mean {_REDUCTION}", keywords=("axis",)),
    "prod": _fn("prod", (1, 1), _reduce, "prod(x, axis=k)", f"product {_REDUCTION}", keywords=("axis",)),
    "logsumexp": _fn("logsumexp", (1, 1), _reduce, "logsumexp(x, axis=k)",
                     f"log(sum(exp(x))) computed stably, {_REDUCTION}; of a list literal it combines the items "
                     f"elementwise: logsumexp([lp1, lp2]) is log(exp(lp1) + exp(lp2)) per element",
                     keywords=("axis",), over_items=True),
    "cumsum": _fn("cumsum", (1, 1), _cumulative, "cumsum(x, axis=0)",
                  "cumulative sum along axis k (default 0, the first axis); same shape as x", keywords=("axis",)),
    "log_mix": _fn("log_mix", (2, 3), _log_mix, "log_mix(theta, lp1, lp2) or log_mix(theta, lps)",
                   "log(theta * exp(lp1) + (1 - theta) * exp(lp2)) elementwise; with theta of shape [K] and lps "
                   "of shape [K, ...] (e.g. a list [lp1, ..., lpK]): log(sum_k theta[k] * exp(lps[k])), per element"),
    "logpdf": _fn("logpdf", (2, 2), _unused, "logpdf(DISTRIBUTION, y)",
                  "elementwise log-density (or log-mass) of y under a leaf distribution, e.g. "
                  "logpdf(normal(mu, sigma), y); its shape is the distribution's batch shape broadcast with y's",
                  takes_distribution=True),
    "sum_last": _fn("sum_last", (1, 1), _reduce_last, "sum_last(x)", "sum over the last axis"),
    "softmax": _fn("softmax", (1, 1), _elementwise, "softmax(x)", "exp(x) / sum(exp(x)) over the last axis"),
    "dot": _fn("dot", (2, 2), _dot, "dot(a, b)", "matrix / vector product, as numpy.dot"),
    "matmul": _fn("matmul", (2, 2), _dot, "matmul(a, b)", "matrix product, as numpy.matmul"),
    "transpose": _fn("transpose", (1, 1), _transpose, "transpose(x)", "reverse the axes"),
    "cholesky": _fn("cholesky", (1, 1), _square, "cholesky(S)", "lower Cholesky factor of a positive-definite matrix"),
    "inverse": _fn("inverse", (1, 1), _square, "inverse(S)", "matrix inverse"),
    "eye": _fn("eye", (1, 1), _eye, "eye(n)", "the n x n identity (n an integer literal or an int input)"),
    "diag_matrix": _fn("diag_matrix", (1, 1), _diag_matrix, "diag_matrix(v)", "the square matrix with v on its "
                       "diagonal and 0 elsewhere"),
    "diag_pre_multiply": _fn("diag_pre_multiply", (2, 2), lambda s, li, a: _diag_multiply(s, li, a, True),
                             "diag_pre_multiply(v, M)", "diag_matrix(v) times M: row i of M scaled by v[i] "
                             "(Stan's; v * M would scale the columns)"),
    "diag_post_multiply": _fn("diag_post_multiply", (2, 2), lambda s, li, a: _diag_multiply(s, li, a, False),
                              "diag_post_multiply(M, v)", "M times diag_matrix(v): column j of M scaled by v[j]"),
    "concat": _fn("concat", (1, 8), _concat, "concat(a, b, ...)", "join vectors of known lengths"),
    "ode": _fn("ode", (4, 12), _unused,
               'ode(f, y0, t0, ts, a, ..., solver="tsit5", rtol=1e-6, atol=1e-6, max_steps=4096)',
               "the solution of dy/dt = f(t, y, a, ...) from y(t0) = y0 at the times ts (a vector, increasing, "
               "from t0): shape [len(ts), *shape(y0)]. f is a user function 'fn f(t, y, a, ...) = ...' returning "
               "dy/dt with y's shape; solver=\"kvaerno5\" for a stiff system; differentiable",
               keywords=("solver", "rtol", "atol", "max_steps")),
    "scan": _fn("scan", (3, 12), _unused, "scan(f, init, xs, a, ...)",
                "a recurrence: c[0] = f(init, xs[0], a, ...), c[t] = f(c[t-1], xs[t], a, ...) along the first axis "
                "of xs; shape [len(xs), *shape(init)]. f is a user function 'fn f(c, x, a, ...) = ...' returning "
                "the next state with init's shape; compiled to one lax.scan (not unrolled), differentiable"),
}

#: functions whose first argument is a user function, passed by name
TAKES_FUNCTION = ("ode", "scan")

#: Stan's ODE solvers: refused with a hint to ode(...), their first argument read as a function name
STAN_ODES = ("ode_rk45", "ode_rk45_tol", "ode_bdf", "ode_bdf_tol", "ode_adams", "ode_ckrk", "integrate_ode_rk45")

#: the solvers of ode(..., solver=...): explicit adaptive Runge-Kutta, and implicit for stiff systems
ODE_SOLVERS = ("tsit5", "kvaerno5")

#: Stan spellings -> the gendsl form, for "did you mean" hints
STAN_NAMES = {
    "log_sum_exp": "logsumexp(x) (or logsumexp([a, b]) for log_sum_exp(a, b))", "cumulative_sum": "cumsum(x)",
    "inv": "1 / x", "fabs": "abs(x)", "multiply_log": "x * log(y)", "exp2": "2 ^ x",
    "columns_dot_product": "sum(a * b, axis=0)", "rows_dot_product": "sum(a * b, axis=1)",
    "mdivide_left_tri_low": "dot(inverse(L), b)", "num_elements": "an int input",
    "ode_rk45": "ode(f, y0, t0, ts, ...)", "ode_rk45_tol": "ode(f, y0, t0, ts, ..., rtol=..., atol=..., max_steps=...)",
    "ode_bdf": 'ode(f, y0, t0, ts, ..., solver="kvaerno5")', "ode_adams": "ode(f, y0, t0, ts, ...)",
    "ode_ckrk": "ode(f, y0, t0, ts, ...)", "integrate_ode_rk45": "ode(f, y0, t0, ts, ...)",
    "ode_bdf_tol": 'ode(f, y0, t0, ts, ..., solver="kvaerno5", rtol=..., atol=..., max_steps=...)',
}
