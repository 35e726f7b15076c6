"""Shape inference for expressions: the shapes of values, indexing, slices, calls and draws.

Pure Python. :class:`Shapes` also records, while it infers, the integer data used as indices
and the ``int`` inputs that end slices (:class:`~gendsl.core.model.IndexUse`), which the
compiler checks against the axis lengths when the data are bound.
"""

from __future__ import annotations

from gendsl.core.ast import BinOp, Call, Expr, Index, Lambda, ListExpr, Name, Num, Slice, Str, Unary, unparse
from gendsl.core.catalog import Catalog
from gendsl.core.functions import FUNCTIONS, TAKES_FUNCTION, literal_axis, ode_options, reduction_axis
from gendsl.core.hints import function_hint
from gendsl.core.model import IndexUse
from gendsl.core.resolve import resolve_call
from gendsl.core.signatures import Spec
from gendsl.core.types import Shape, VarType, broadcast_shapes, dim_parts, offset_dim, shape_str
from gendsl.errors import GenSemanticError

__all__ = ["Shapes", "distribution_shape", "compatible", "EVENT_NDIM"]

#: a distribution's event rule -> how many trailing axes of a draw one log-density covers
EVENT_NDIM = {"broadcast": 0, "drop_last": 0, "first": 1, "mvn": 1, "lkj": 2}


class Shapes:
    """Shape inference for expressions, given the types of the variables in scope."""

    def __init__(self, types: dict[str, VarType], int_inputs: set[str], catalog: Catalog,
                 int_data: set[str] = frozenset()):
        self.types = types
        self.int_inputs = int_inputs
        self.catalog = catalog
        self.int_data = int_data
        #: integer data used as indices and int inputs ending slices, checked when data are bound
        self.uses: dict[tuple, IndexUse] = {}

    def of(self, e: Expr) -> Shape:
        if isinstance(e, (Num, Str)):
            return ()
        if isinstance(e, Name):
            return self.types[e.id].shape
        if isinstance(e, Unary):
            return self.of(e.operand)
        if isinstance(e, BinOp):
            return self._broadcast(e, [self.of(e.left), self.of(e.right)])
        if isinstance(e, ListExpr):
            shapes = [self.of(i) for i in e.items]
            inner = self._broadcast(e, shapes) if shapes else ()
            return (len(e.items), *inner)
        if isinstance(e, Index):
            return self._index(e)
        if isinstance(e, Call):
            return self._call(e)
        raise TypeError(e)

    def _index(self, e: Index) -> Shape:
        """NumPy's rule: slices keep (part of) their axis; integer indices broadcast together and
        take the place of their axes when adjacent, else go first."""
        base = self.of(e.value)
        if len(e.indices) > len(base):
            raise GenSemanticError(f"too many indices for '{unparse(e.value)}' of shape {shape_str(base)}", e.span)
        sliced, advanced = {}, []
        for axis, i in enumerate(e.indices):
            if isinstance(i, Slice):
                sliced[axis] = self._slice_length(e, i, base[axis])
                continue
            self._check_literal_index(e, i, base[axis])
            self._record_index(e, i, base[axis])
            advanced.append((axis, self.of(i)))
        lead = self._broadcast(e, [s for _, s in advanced])
        rest = base[len(e.indices):]
        positions = [a for a, _ in advanced]
        if positions and positions != list(range(positions[0], positions[-1] + 1)):
            return (*lead, *sliced.values(), *rest)
        first = positions[0] if positions else len(e.indices)
        before = [d for a, d in sliced.items() if a < first]
        after = [d for a, d in sliced.items() if a > first]
        return (*before, *lead, *after, *rest)

    def _slice_bound(self, e: Index, b: Expr, dim) -> object:
        """A slice bound: an integer literal, or an int input with an optional literal offset (``T - 1``)."""
        value = literal_axis(b)
        if value is not None:
            if value < 0:
                raise GenSemanticError(f"a slice bound must not be negative, got {value}", b.span)
            return value
        name, offset = b, 0
        if isinstance(b, BinOp) and b.op in "+-" and isinstance(b.right, Num) and isinstance(b.right.value, int):
            name, offset = b.left, b.right.value if b.op == "+" else -b.right.value
        if isinstance(name, Name) and name.id in self.int_inputs:
            bound = offset_dim(name.id, offset)
            if bound != dim:
                self.uses[("stop", name.id, dim, offset)] = IndexUse(name.id, dim, unparse(e)[:60], b.span, "stop",
                                                                     offset)
            return bound
        raise GenSemanticError(f"a slice bound must be an integer literal or an int input (with an integer offset, "
                               f"T - 1), got '{unparse(b)}'", b.span)

    def _slice_length(self, e: Index, sl: Slice, dim) -> object:
        """The length of ``start:stop`` over an axis of length ``dim``: an integer or a symbolic
        dimension (``y[1:]`` of a ``real[T]`` has length ``T-1``)."""
        start = 0 if sl.start is None else self._slice_bound(e, sl.start, dim)
        stop = dim if sl.stop is None else self._slice_bound(e, sl.stop, dim)
        if isinstance(stop, int) and isinstance(dim, int) and stop > dim:
            raise GenSemanticError(f"the slice '{unparse(sl)}' runs past the end of an axis of length {dim} "
                                   f"in '{unparse(e)[:60]}'", sl.span)
        if isinstance(start, int):
            length = offset_dim(stop, -start)
        elif isinstance(stop, str) and dim_parts(stop)[0] == dim_parts(start)[0]:
            length = dim_parts(stop)[1] - dim_parts(start)[1]
        else:
            raise GenSemanticError(f"the length of the slice '{unparse(sl)}' of an axis of length {dim} does not follow "
                                   f"from its bounds; write both ends with the same int input (x[K - 3:K]) or start "
                                   f"at a literal (x[1:], x[:T - 1])", sl.span)
        if isinstance(length, int) and length <= 0:
            raise GenSemanticError(f"the slice '{unparse(sl)}' is empty", sl.span)
        return length

    def _record_index(self, e: Index, i: Expr, dim) -> None:
        """Integer data as an index (``theta[g]``, ``theta[g - 1]``): checked when the data are bound."""
        offset = 0
        if isinstance(i, BinOp) and i.op in "+-" and isinstance(i.right, Num) and isinstance(i.right.value, int):
            offset = i.right.value if i.op == "+" else -i.right.value
            i = i.left
        if isinstance(i, Name) and (i.id in self.int_data or i.id in self.int_inputs):
            self.uses[("index", i.id, dim, offset)] = IndexUse(i.id, dim, unparse(e)[:60], i.span, "index", offset)

    def _call(self, e: Call) -> Shape:
        fn = FUNCTIONS.get(e.func)
        if fn is None:
            raise GenSemanticError(f"unknown function '{e.func}'{function_hint(e.func, self.catalog)}", e.span)
        lo, hi = fn.nargs
        extra = [k for k, _ in e.kwargs if k not in fn.keywords]
        if extra:
            takes = f"; it takes {', '.join(k + '=' for k in fn.keywords)}" if fn.keywords else ""
            raise GenSemanticError(f"{e.func}() has no argument '{extra[0]}='{takes}", e.span)
        if not lo <= len(e.args) <= hi:
            want = f"{lo}" if lo == hi else f"{lo} to {hi}"
            raise GenSemanticError(f"{e.func}() takes {want} positional argument(s), got {len(e.args)}", e.span)
        axis = e.kwarg("axis")
        if axis is not None and literal_axis(axis) is None:
            raise GenSemanticError(f"{e.func}(): axis= must be an integer literal, got '{unparse(axis)}'", axis.span)
        if fn.takes_distribution:
            return self._logpdf(e)
        if e.func == "scan":
            return self._scan(e)
        if e.func in TAKES_FUNCTION:
            return self._ode(e)
        shapes = [self.of(a) for a in e.args]
        lits = [a.value if isinstance(a, Num) and isinstance(a.value, int) else
                (a.id if isinstance(a, Name) and a.id in self.int_inputs else None) for a in e.args]
        try:
            return fn.rule(shapes, lits, reduction_axis(e) if fn.keywords else None)
        except ValueError as err:
            raise GenSemanticError(f"{e.func}(): {err}", e.span) from None

    def _logpdf(self, e: Call) -> Shape:
        """``logpdf(DIST(...), y)``: the draw's shape broadcast with y's, less the event axes."""
        dcall, value = e.args
        sig = self.catalog.signatures.get(dcall.func) if isinstance(dcall, Call) else None
        if sig is None or sig.category != "distribution":
            raise GenSemanticError(f"logpdf's first argument must be a distribution such as normal(0, 1), "
                                   f"got '{unparse(dcall)[:40]}'", dcall.span)
        spec = resolve_call(dcall, self.catalog.signatures, "distribution")
        draw = distribution_shape(spec, dcall, self)
        full = self._broadcast(e, [draw, self.of(value)])
        return full[:len(full) - EVENT_NDIM[sig.event]]

    def _ode(self, e: Call) -> Shape:
        """``ode(f, y0, t0, ts, a, ...)``: ``[len(ts), *shape(y0)]``, once f's body, given the shapes
        of ``t0``, ``y0`` and the extra arguments, gives dy/dt of y0's shape."""
        f, y0, t0, ts, *extra = e.args
        if not isinstance(f, Lambda):
            raise GenSemanticError(f"ode()'s first argument must be a user function 'fn f(t, y, ...) = ...', "
                                   f"got '{unparse(f)[:40]}'", f.span)
        try:
            ode_options(e)
        except ValueError as err:
            raise GenSemanticError(f"ode(): {err}", e.span) from None
        if len(f.params) != 2 + len(extra):
            raise GenSemanticError(f"ode() passes f(t, y{''.join(', ' + unparse(a) for a in extra)}) "
                                   f"({2 + len(extra)} arguments), but '{f.name}' takes {len(f.params)} "
                                   f"({', '.join(f.params)})", e.span)
        y_shape, times = self.of(y0), self.of(ts)
        if self.of(t0) != ():
            raise GenSemanticError(f"ode(): t0 must be a scalar, got shape {shape_str(self.of(t0))}", t0.span)
        if len(times) != 1:
            raise GenSemanticError(f"ode(): ts must be a vector of output times, got shape {shape_str(times)}", ts.span)
        arg_types = [VarType("real", s) for s in ((), y_shape, *(self.of(a) for a in extra))]
        inner = Shapes(dict(zip(f.params, arg_types)), set(), self.catalog)
        slope = inner.of(f.body)
        if not compatible(y_shape, slope):
            raise GenSemanticError(f"ode(): '{f.name}' returns dy/dt of shape {shape_str(slope)} but y0 has shape "
                                   f"{shape_str(y_shape)}; dy/dt must have y's shape", e.span)
        return (times[0], *y_shape)

    def _scan(self, e: Call) -> Shape:
        """``scan(f, init, xs, a, ...)``: ``[len(xs), *shape(init)]``, once f's body, given the shapes
        of ``init``, one element of ``xs`` and the extra arguments, gives the next state of init's shape."""
        f, init, xs, *extra = e.args
        if not isinstance(f, Lambda):
            raise GenSemanticError(f"scan()'s first argument must be a user function 'fn f(c, x, ...) = ...', "
                                   f"got '{unparse(f)[:40]}'", f.span)
        if e.kwargs:
            raise GenSemanticError(f"scan() takes no options, got {e.kwargs[0][0]}=", e.span)
        if len(f.params) != 2 + len(extra):
            raise GenSemanticError(f"scan() passes f(state, x{''.join(', ' + unparse(a) for a in extra)}) "
                                   f"({2 + len(extra)} arguments), but '{f.name}' takes {len(f.params)} "
                                   f"({', '.join(f.params)})", e.span)
        state, sequence = self.of(init), self.of(xs)
        if len(sequence) < 1:
            raise GenSemanticError(f"scan(): xs must have a first axis to step along (a vector or a matrix), got a "
                                   f"scalar '{unparse(xs)[:40]}'", xs.span)
        arg_types = [VarType("real", s) for s in (state, sequence[1:], *(self.of(a) for a in extra))]
        inner = Shapes(dict(zip(f.params, arg_types)), set(), self.catalog)
        following = inner.of(f.body)
        if not compatible(state, following) or len(following) > len(state):
            raise GenSemanticError(f"scan(): '{f.name}' returns a state of shape {shape_str(following)} but init has "
                                   f"shape {shape_str(state)}; the carried state must keep init's shape", e.span)
        return (sequence[0], *state)

    @staticmethod
    def _check_literal_index(e: Index, i: Expr, dim) -> None:
        """A constant index (a literal, or integer literals joined by ``+ - *``) must be an integer
        within the dimension (when that is known)."""
        num = i.operand if isinstance(i, Unary) and isinstance(i.operand, Num) else i
        if isinstance(num, Num) and not isinstance(num.value, int):
            raise GenSemanticError(f"an index must be an integer, got {unparse(i)}", i.span)
        value = _constant_int(i)
        if value is None:
            return
        if isinstance(dim, int) and not -dim <= value < dim:
            raise GenSemanticError(f"index {value} is out of range for an axis of length {dim} "
                                   f"in '{unparse(e)[:60]}' (indexing is 0-based)", i.span)

    def _broadcast(self, e: Expr, shapes: list[Shape]) -> Shape:
        try:
            return broadcast_shapes(*shapes)
        except ValueError as err:
            raise GenSemanticError(f"in '{unparse(e)}': {err}", e.span) from None


def distribution_shape(spec: Spec, call: Call, shapes: Shapes) -> Shape:
    sig = shapes.catalog.signatures[spec.name]
    arg_shapes = [shapes.of(spec[p.name]) for p in sig.params]
    if sig.event == "broadcast":
        try:
            return broadcast_shapes(*arg_shapes)
        except ValueError as err:
            raise GenSemanticError(f"arguments of {spec.name}(): {err}", call.span) from None
    if sig.event in ("drop_last", "first") and not arg_shapes[0]:
        what = sig.params[0].name
        raise GenSemanticError(f"{spec.name}() needs a vector of {what} (shape [K]), got a scalar", call.span)
    if sig.event == "drop_last":
        return arg_shapes[0][:-1]
    if sig.event == "first":
        return arg_shapes[0]
    if sig.event == "mvn":
        loc, cov = arg_shapes
        if len(cov) < 2:
            raise GenSemanticError(f"{spec.name}(): the covariance must be a matrix, got shape {shape_str(cov)}", call.span)
        return broadcast_shapes(loc, cov[:-1])
    if sig.event == "lkj":
        d = spec[sig.params[0].name]
        if isinstance(d, Num) and isinstance(d.value, int):
            return (d.value, d.value)
        if isinstance(d, Name) and d.id in shapes.int_inputs:
            return (d.id, d.id)
        raise GenSemanticError(f"{spec.name}({sig.params[0].name}, ...) needs an integer dimension", call.span)
    raise AssertionError(sig.event)


def compatible(declared: Shape, inferred: Shape) -> bool:
    try:
        return broadcast_shapes(declared, inferred) == tuple(declared)
    except ValueError:
        return False


#: most digits of a folded constant index (a longer product is no index of any axis)
_CONSTANT_DIGITS = 30


def _constant_int(e: Expr) -> int | None:
    """The value of an integer constant expression: integer literals joined by unary ``-`` and
    binary ``+``, ``-``, ``*``; None for anything else."""
    if isinstance(e, Num):
        return e.value if isinstance(e.value, int) and not isinstance(e.value, bool) else None
    if isinstance(e, Unary) and e.op == "-":
        value = _constant_int(e.operand)
        return -value if value is not None else None
    if isinstance(e, BinOp) and e.op in ("+", "-", "*"):
        left, right = _constant_int(e.left), _constant_int(e.right)
        if left is None or right is None:
            return None
        value = left + right if e.op == "+" else left - right if e.op == "-" else left * right
        return value if len(str(abs(value))) <= _CONSTANT_DIGITS else None
    return None
