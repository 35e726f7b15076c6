"""Expressions -> JAX: evaluate an expression tree for ONE example.

``evaluate(expr, env)`` walks the tree with ``env`` mapping variable names to unbatched arrays;
callers ``jax.vmap`` it over a batch. Pure and traceable; built once per node at lowering.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import jax.scipy.special as jss

from gendsl.core.ast import BinOp, Call, Expr, Index, ListExpr, Name, Num, Opaque, Str, Unary

__all__ = ["IMPLEMENTATIONS", "evaluate"]

IMPLEMENTATIONS = {
    "exp": jnp.exp, "log": jnp.log, "sqrt": jnp.sqrt, "abs": jnp.abs, "sigmoid": jax.nn.sigmoid,
    "inv_logit": jax.nn.sigmoid, "tanh": jnp.tanh, "softplus": jax.nn.softplus, "log1p": jnp.log1p,
    "expm1": jnp.expm1, "sin": jnp.sin, "cos": jnp.cos, "logit": jss.logit, "square": jnp.square,
    "floor": jnp.floor, "ceil": jnp.ceil, "lgamma": jss.gammaln, "digamma": jss.digamma, "erf": jss.erf,
    "log_sigmoid": jax.nn.log_sigmoid, "sign": jnp.sign,
    "pow": jnp.power, "min": jnp.minimum, "max": jnp.maximum, "where": jnp.where,
    "sum": jnp.sum, "mean": jnp.mean, "prod": jnp.prod, "logsumexp": jss.logsumexp,
    "sum_last": lambda x: jnp.sum(x, axis=-1), "softmax": jax.nn.softmax,
    "dot": jnp.dot, "matmul": jnp.matmul, "transpose": jnp.transpose, "cholesky": jnp.linalg.cholesky,
    "inverse": jnp.linalg.inv, "eye": None, "concat": lambda *xs: jnp.concatenate(xs),
}

_BINARY = {"+": jnp.add, "-": jnp.subtract, "*": jnp.multiply, "/": jnp.true_divide, "^": jnp.power}


def _as_float(x):
    x = jnp.asarray(x)
    return x if jnp.issubdtype(x.dtype, jnp.floating) else x.astype(jnp.result_type(float))


def evaluate(expr: Expr, env: dict) -> jax.Array:
    """Value of ``expr`` for one example; ``env`` maps names to (unbatched) arrays."""
    if isinstance(expr, Num):
        return jnp.asarray(expr.value, dtype=jnp.result_type(float)) if isinstance(expr.value, float) else expr.value
    if isinstance(expr, Str):
        raise TypeError("strings have no value")
    if isinstance(expr, Name):
        return env[expr.id]
    if isinstance(expr, Unary):
        return -evaluate(expr.operand, env)
    if isinstance(expr, BinOp):
        left, right = evaluate(expr.left, env), evaluate(expr.right, env)
        if expr.op in ("/", "^"):
            left, right = _as_float(left), right if expr.op == "^" else _as_float(right)
        return _BINARY[expr.op](left, right)
    if isinstance(expr, ListExpr):
        return jnp.stack([jnp.asarray(evaluate(i, env)) for i in expr.items])
    if isinstance(expr, Index):
        value = jnp.asarray(evaluate(expr.value, env))
        idx = tuple(jnp.asarray(evaluate(i, env)).astype(jnp.int32) for i in expr.indices)
        return value[idx]
    if isinstance(expr, Call):
        if expr.func == "eye":
            n = expr.args[0]
            size = n.value if isinstance(n, Num) else int(env[n.id])
            return jnp.eye(size)
        args = [evaluate(a, env) for a in expr.args]
        return IMPLEMENTATIONS[expr.func](*args)
    if isinstance(expr, Opaque):
        return expr.fn(env[expr.arg])
    raise TypeError(f"not an expression: {expr!r}")
