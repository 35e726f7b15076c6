"""Expressions -> JAX: evaluate an expression tree for ONE example.

``evaluate(expr, env, forms)`` walks the tree with ``env`` mapping variable names to unbatched
arrays; callers ``jax.vmap`` it over a batch. Pure and traceable; built once per node at
lowering. ``forms`` are the calls implemented above this layer, handed the call unevaluated
(``logpdf(normal(mu, sigma), y)`` needs the distribution table): ``form(call, env, evaluate)``.
"""

from __future__ import annotations

from typing import Callable, Mapping

import jax
import jax.numpy as jnp
import jax.scipy.special as jss

from gendsl.core.ast import COMPARISONS, BinOp, Call, Expr, Index, ListExpr, Name, Num, Opaque, Slice, Str, Unary
from gendsl.core.functions import FUNCTIONS, TAKES_FUNCTION, ode_options, reduction_axis
from gendsl.numerics.ode import solve_at

__all__ = ["IMPLEMENTATIONS", "evaluate"]


def _log_mix(theta, *lps):
    """``log(theta e^lp1 + (1 - theta) e^lp2)``, or ``log(sum_k theta_k e^lps_k)`` over lps' first axis."""
    theta = jnp.asarray(theta)
    if len(lps) == 2:
        return jnp.logaddexp(jnp.log(theta) + lps[0], jnp.log1p(-theta) + lps[1])
    lps = jnp.asarray(lps[0])
    log_theta = jnp.log(theta).reshape(theta.shape + (1,) * (lps.ndim - 1))
    return jss.logsumexp(log_theta + lps, axis=0)


def _reduce_or_elementwise(reduce, elementwise):
    """``max(x, axis=...)`` reduces; ``max(a, b)`` is elementwise."""
    def f(*args, axis=None):
        return elementwise(*args) if len(args) == 2 else reduce(args[0], axis=axis)

    return f


IMPLEMENTATIONS = {
    "exp": jnp.exp, "log": jnp.log, "sqrt": jnp.sqrt, "abs": jnp.abs, "sigmoid": jax.nn.sigmoid,
    "inv_logit": jax.nn.sigmoid, "tanh": jnp.tanh, "softplus": jax.nn.softplus, "log1p": jnp.log1p,
    "expm1": jnp.expm1, "sin": jnp.sin, "cos": jnp.cos, "logit": jss.logit, "square": jnp.square,
    "floor": jnp.floor, "ceil": jnp.ceil, "lgamma": jss.gammaln, "digamma": jss.digamma, "erf": jss.erf,
    "log_sigmoid": jax.nn.log_sigmoid, "sign": jnp.sign,
    "pow": jnp.power, "min": _reduce_or_elementwise(jnp.min, jnp.minimum),
    "max": _reduce_or_elementwise(jnp.max, jnp.maximum), "where": jnp.where,
    "sum": jnp.sum, "mean": jnp.mean, "prod": jnp.prod, "logsumexp": jss.logsumexp,
    "cumsum": lambda x, axis=None: jnp.cumsum(x, axis=0 if axis is None else axis), "log_mix": _log_mix,
    "sum_last": lambda x: jnp.sum(x, axis=-1), "softmax": jax.nn.softmax,
    "dot": jnp.dot, "matmul": jnp.matmul, "transpose": jnp.transpose, "cholesky": jnp.linalg.cholesky,
    "inverse": jnp.linalg.inv, "eye": None, "concat": lambda *xs: jnp.concatenate(xs), "logpdf": None, "ode": None,
    "scan": None, "diag_matrix": lambda v: v[..., :, None] * jnp.eye(v.shape[-1], dtype=v.dtype),
    "diag_pre_multiply": lambda v, m: v[..., :, None] * m, "diag_post_multiply": lambda m, v: m * v[..., None, :],
}

_BINARY = {"+": jnp.add, "-": jnp.subtract, "*": jnp.multiply, "/": jnp.true_divide, "^": jnp.power,
           "==": jnp.equal, "!=": jnp.not_equal, "<": jnp.less, "<=": jnp.less_equal, ">": jnp.greater,
           ">=": jnp.greater_equal, "and": lambda a, b: (a != 0) & (b != 0), "or": lambda a, b: (a != 0) | (b != 0)}


def _as_float(x):
    x = jnp.asarray(x)
    return x if jnp.issubdtype(x.dtype, jnp.floating) else x.astype(jnp.result_type(float))


def _static(b, env: dict) -> int:
    """A slice bound as a Python int: a literal, an int input, or one of them plus or minus a literal."""
    if isinstance(b, Num):
        return b.value
    if isinstance(b, Name):
        return int(env[b.id])
    if isinstance(b, Unary):
        return -_static(b.operand, env)
    left, right = _static(b.left, env), _static(b.right, env)
    return left + right if b.op == "+" else left - right


def _subscript(i, env: dict, forms):
    """An index: a static ``slice`` (its bounds are literals or int inputs) or an int32 array."""
    if isinstance(i, Slice):
        return slice(*(None if b is None else _static(b, env) for b in (i.start, i.stop)))
    return jnp.asarray(evaluate(i, env, forms)).astype(jnp.int32)


def _ode(call: Call, env: dict, forms) -> jax.Array:
    """``ode(f, y0, t0, ts, a, ...)``: y at the times ts, shape ``(len(ts), *y0.shape)`` (diffrax)."""
    f, y0, t0, ts, *extra = call.args

    def field(t, y, args):
        slope = evaluate(f.body, dict(zip(f.params, (t, y, *args))), forms)
        return jnp.broadcast_to(jnp.asarray(slope, y.dtype), y.shape)

    values = [_as_float(evaluate(a, env, forms)) for a in (y0, t0, ts, *extra)]
    return solve_at(field, values[0], values[1], values[2], tuple(values[3:]), **ode_options(call))


def _scan(call: Call, env: dict, forms) -> jax.Array:
    """``scan(f, init, xs, a, ...)``: the states ``c[t] = f(c[t-1], xs[t], a, ...)``, shape
    ``(len(xs), *init.shape)``: one ``lax.scan`` along the first axis of xs."""
    f, init, xs, *extra = call.args
    state = _as_float(evaluate(init, env, forms))
    args = tuple(evaluate(a, env, forms) for a in extra)

    def step(c, x):
        following = evaluate(f.body, dict(zip(f.params, (c, x, *args))), forms)
        following = jnp.broadcast_to(jnp.asarray(following, c.dtype), c.shape)
        return following, following

    return jax.lax.scan(step, state, jnp.asarray(evaluate(xs, env, forms)))[1]


def evaluate(expr: Expr, env: dict, forms: Mapping[str, Callable] | None = None) -> jax.Array:
    """Value of ``expr`` for one example; ``env`` maps names to (unbatched) arrays.

    Comparisons, ``and`` and ``or`` give 1.0 where they hold, else 0.0. ``forms`` implement the
    calls that need more than their arguments' values (``logpdf``).
    """
    if isinstance(expr, Num):
        return jnp.asarray(expr.value, dtype=jnp.result_type(float)) if isinstance(expr.value, float) else expr.value
    if isinstance(expr, Str):
        raise TypeError("strings have no value")
    if isinstance(expr, Name):
        return env[expr.id]
    if isinstance(expr, Unary):
        return -evaluate(expr.operand, env, forms)
    if isinstance(expr, BinOp):
        left, right = evaluate(expr.left, env, forms), evaluate(expr.right, env, forms)
        if expr.op in ("/", "^"):
            left, right = _as_float(left), right if expr.op == "^" else _as_float(right)
        out = _BINARY[expr.op](left, right)
        return _as_float(out) if expr.op in (*COMPARISONS, "and", "or") else out
    if isinstance(expr, ListExpr):
        return jnp.stack(jnp.broadcast_arrays(*(jnp.asarray(evaluate(i, env, forms)) for i in expr.items)))
    if isinstance(expr, Index):
        value = jnp.asarray(evaluate(expr.value, env, forms))
        return value[tuple(_subscript(i, env, forms) for i in expr.indices)]
    if isinstance(expr, Call):
        if forms is not None and expr.func in forms:
            return forms[expr.func](expr, env, lambda e: evaluate(e, env, forms))
        if expr.func == "scan":
            return _scan(expr, env, forms)
        if expr.func in TAKES_FUNCTION:
            return _ode(expr, env, forms)
        if expr.func == "eye":
            n = expr.args[0]
            size = n.value if isinstance(n, Num) else int(env[n.id])
            return jnp.eye(size)
        args = [evaluate(a, env, forms) for a in expr.args]
        if FUNCTIONS[expr.func].keywords:
            return IMPLEMENTATIONS[expr.func](*args, axis=reduction_axis(expr))
        return IMPLEMENTATIONS[expr.func](*args)
    if isinstance(expr, Opaque):
        return expr.fn(env[expr.arg])
    raise TypeError(f"not an expression: {expr!r}")
