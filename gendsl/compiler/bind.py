"""Data -> arrays the compiled program can use, checked before anything is traced.

Every problem is a :class:`~gendsl.errors.GenDataError` naming the variable, what was
expected and what came.
"""

from __future__ import annotations

from typing import Iterable, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from gendsl.core.resolve import literal
from gendsl.core.types import bind_dim, shape_str
from gendsl.errors import GenDataError
from gendsl.mechanisms.constraints import type_constraint

__all__ = ["prepare", "prepare_given", "dtype_for"]


def dtype_for(base: str):
    """The array dtype of a variable of this base type."""
    return jnp.int32 if base in ("int", "token") else jnp.result_type(float)


def _first(mask: np.ndarray) -> list[int]:
    """The index of the first True element of ``mask``."""
    return [int(i) for i in np.argwhere(mask)[0]]


def _check_representable(name: str, vtype, arr: np.ndarray, span) -> None:
    """Refuse values the computation's dtype would change: complex numbers, integers beyond
    int32 (they would wrap), reals beyond the float range (they would become inf)."""
    if np.iscomplexobj(arr):
        where = _first(np.imag(arr) != 0) if np.any(np.imag(arr)) else [0] * arr.ndim
        raise GenDataError(f"'{name}' holds complex numbers ({arr[tuple(where)].item()!r} at index {where}); "
                           "the model computes with real numbers", span)
    if arr.dtype == bool or not np.issubdtype(arr.dtype, np.number):
        return
    target = np.dtype(jax.dtypes.canonicalize_dtype(dtype_for(vtype.base)))
    info = np.iinfo(target) if np.issubdtype(target, np.integer) else np.finfo(target)
    values = arr.astype(np.float64) if np.issubdtype(arr.dtype, np.floating) else arr
    finite = np.isfinite(values) if np.issubdtype(values.dtype, np.floating) else np.ones(arr.shape, bool)
    outside = finite & ((values < info.min) | (values > info.max))
    if outside.any():
        where = _first(outside)
        raise GenDataError(f"'{name}' holds {arr[tuple(where)].item()!r} at index {where}, outside the range of the "
                           f"{target.name} values the model computes with ({info.min} to {info.max})", span)


def _check_values(name: str, vtype, arr: np.ndarray, span) -> None:
    if arr.size == 0:
        raise GenDataError(f"'{name}' is empty", span)
    _check_representable(name, vtype, arr, span)
    if vtype.base in ("int", "token"):
        if not np.issubdtype(arr.dtype, np.integer):
            if not np.issubdtype(arr.dtype, np.floating) or not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr)):
                raise GenDataError(f"'{name}' is declared {vtype} and needs integers, got {arr.dtype} values", span)
        if vtype.base == "token":
            lo, hi = int(arr.min()), int(arr.max())
            if lo < 0 or hi >= int(vtype.vocab):
                raise GenDataError(f"'{name}' holds tokens in 0..{int(vtype.vocab) - 1}, got values from {lo} to {hi}", span)
        return
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise GenDataError(f"'{name}' needs numbers, got {arr.dtype} values", span)
    bad = ~np.isfinite(arr.astype(float))
    if bad.any():
        where = tuple(int(i) for i in np.argwhere(bad)[0])
        raise GenDataError(f"'{name}' holds a non-finite value ({arr[where]}) at index {list(where)}", span)
    if vtype.base == "positive" and np.any(arr <= 0):
        raise GenDataError(f"'{name}' is declared {vtype} but holds values <= 0 (min {arr.min():g})", span)
    if vtype.base == "unit" and (np.any(arr <= 0) or np.any(arr >= 1)):
        raise GenDataError(f"'{name}' is declared {vtype} but holds values outside (0, 1)", span)
    if vtype.constrained and vtype.lower is None and vtype.upper is None:
        inside = np.asarray(type_constraint(vtype, None)(jnp.asarray(arr, dtype=jnp.result_type(float))))
        if not inside.all():
            raise GenDataError(f"'{name}' is declared {vtype} but holds values that are not {_WORDS[vtype.base]}", span)


_WORDS = {"ordered": "increasing", "positive_ordered": "positive and increasing", "simplex": "a simplex (>= 0, summing to 1)",
          "sum_to_zero": "summing to zero", "cholesky_factor_corr": "the Cholesky factor of a correlation matrix",
          "corr_matrix": "a correlation matrix", "cov_matrix": "a symmetric positive-definite matrix"}


def _bound(expr, arrays: Mapping, dims: Mapping):
    """A bound's value where the data fix it (a literal, a dimension or scalar data), else None."""
    try:
        return literal(expr)
    except ValueError:
        pass
    name = getattr(expr, "id", None)
    if name in dims:
        return dims[name]
    value = arrays.get(name)
    return None if value is None or np.ndim(value) else float(value)


def _check_bounds(name: str, vtype, arr: np.ndarray, arrays: Mapping, dims: Mapping, span) -> None:
    """Data of a bounded type lie within the bounds the data fix (``int<lower=1>``, ``real<lower=0, upper=L>``)."""
    for key, expr in (("lower", vtype.lower), ("upper", vtype.upper)):
        bound = _bound(expr, arrays, dims) if expr is not None else None
        if bound is None:
            continue
        outside = arr < bound if key == "lower" else arr > bound
        if np.any(outside):
            where = [int(i) for i in np.argwhere(outside)[0]]
            raise GenDataError(f"'{name}' is declared {vtype} but holds {arr[tuple(where)]} at index {where}, "
                               f"{'below' if key == 'lower' else 'above'} the bound {bound:g}", span)


def _check_indices(model, raw: Mapping[str, np.ndarray], dims: Mapping[str, int]) -> None:
    """Integer data used as indices lie in 0..length-1 of the axis they index (JAX would clamp or wrap)."""
    for use in model.index_uses:
        if use.kind != "index" or use.name not in raw:
            continue
        values = raw[use.name].astype(np.int64) + use.offset
        length = int(bind_dim(use.dim, dims))
        bad = (values < 0) | (values >= length)
        if bad.any():
            where = [int(i) for i in np.argwhere(bad)[0]]
            shown = f"{use.name}{'+' if use.offset > 0 else '-'}{abs(use.offset)}" if use.offset else use.name
            hint = "; indices are 0-based: subtract 1 from 1-based ones" if values.max() == length else ""
            raise GenDataError(f"'{use.name}' indexes an axis of length {length} in '{use.text}' but {shown} holds "
                               f"{int(values[tuple(where)])} at index {where} (valid: 0 to {length - 1}){hint}",
                               use.span)


def prepare(lowered, data: Mapping[str, object], required: Iterable[str], *, batched: bool,
            allowed: Iterable[str] | None = None) -> tuple[dict, int | None]:
    """Check and convert ``data`` for the lowered graph.

    Parameters
    ----------
    lowered:
        The :class:`~gendsl.compiler.Lowered` graph (bound types).
    data:
        Variable name -> array-like.
    required:
        Names that must be present.
    batched:
        If True every value gets a leading example axis ``n`` (values given without one, such as
        shared covariates, are broadcast); if False values are single examples.
    allowed:
        Names that may be present (default: every variable of the model).

    Returns
    -------
    (arrays, n):
        ``arrays`` maps names to jnp arrays (static ``int`` inputs excluded), ``n`` the number of
        examples (None when not batched).
    """
    model = lowered.model
    dims = lowered.dim_values
    allowed = set(allowed) if allowed is not None else set(model.graph.nodes)
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise GenDataError(f"the data hold {', '.join(repr(u) for u in unknown)}, which the model "
                           f"'{model.name}' does not {'declare' if set(unknown) - set(model.graph.nodes) else 'take here'} "
                           f"(it takes: {', '.join(sorted(allowed))})", model.span)
    missing = [r for r in required if r not in data]
    if missing:
        raise GenDataError(f"the data are missing {', '.join(repr(m) for m in missing)} "
                           f"(model '{model.name}')", model[missing[0]].span)
    arrays, lengths, raw_arrays = {}, {}, {}
    for name, raw in data.items():
        if name in dims:
            continue
        node = lowered.node(name)
        vtype = node.type
        try:
            arr = np.asarray(raw)
        except Exception:  # noqa: BLE001 - anything numpy cannot read is the user's data problem
            raise GenDataError(f"'{name}' cannot be read as an array", node.var.span) from None
        if arr.dtype == object:
            raise GenDataError(f"'{name}' is ragged or not numeric", node.var.span)
        event = tuple(int(d) for d in vtype.shape)
        if batched and arr.shape[1:] == event and arr.ndim == len(event) + 1:
            lengths[name] = arr.shape[0]
        elif arr.shape != event:
            expect = f"{shape_str(event)} or (n, {', '.join(map(str, event))})" if batched else shape_str(event)
            if batched and not event:
                expect = "a scalar or a vector of n examples"
            raise GenDataError(f"'{name}' is declared {vtype} (shape {expect}) but the data have shape "
                               f"{list(arr.shape)}", node.var.span)
        _check_values(name, vtype, arr, node.var.span)
        raw_arrays[name] = arr
        arrays[name] = jnp.asarray(arr, dtype=dtype_for(vtype.base))
    for name, arr in raw_arrays.items():
        vtype = lowered.node(name).type
        if vtype.lower is not None or vtype.upper is not None:
            _check_bounds(name, vtype, arr, raw_arrays, dims, lowered.node(name).var.span)
    _check_indices(model, raw_arrays, dims)
    n = None
    if batched:
        if len(set(lengths.values())) > 1:
            desc = ", ".join(f"'{k}': {v}" for k, v in lengths.items())
            raise GenDataError(f"the data variables have different numbers of examples ({desc})", model.span)
        n = next(iter(lengths.values()), 1)
        for name, arr in arrays.items():
            if name not in lengths:
                arrays[name] = jnp.broadcast_to(arr, (n, *arr.shape))
    return arrays, n


def prepare_given(lowered, given: Mapping[str, object]) -> tuple[dict, int | None]:
    """Checked ``(n or 1, *shape)`` arrays of values that clamp modelled variables (``sample``'s
    ``given=``) and their number of examples (None when nothing is given). One value for every
    draw may be written without its event axes (``{"label": 3}`` for a ``token[1]``)."""
    model = lowered.model
    modelled = [v.name for v in model.by_role("observed", "latent")]
    unknown = sorted(set(given) - set(modelled))
    if unknown:
        raise GenDataError(f"given= names {', '.join(map(repr, unknown))}, which {'is' if len(unknown) == 1 else 'are'} "
                           f"not a modelled variable of '{model.name}' (it has: {', '.join(modelled)})", model.span)
    if not given:
        return {}, None
    values = {}
    for name, value in given.items():
        arr, shape = np.asarray(value), tuple(int(d) for d in lowered.node(name).type.shape)
        values[name] = arr.reshape(shape) if arr.shape != shape and arr.size == int(np.prod(shape)) else arr
    return prepare(lowered, values, list(values), batched=True, allowed=list(values))
