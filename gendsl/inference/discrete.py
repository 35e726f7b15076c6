"""Finite discrete latents summed out of the log joint by enumeration.

A latent ``z: int ~ categorical(theta)`` (or ``bernoulli``, or any leaf with finitely many
values) is not sampled: the log joint is ``log sum_k p(z = k, rest)``, computed by evaluating
every term that depends on ``z`` at each of its ``K`` values at once (``vmap`` over the values,
no Python loop) and taking a log-sum-exp. A vector ``z: int[N]`` of independent elements is
summed element by element: every term that depends on it must score element ``i`` of its
variable with ``z[i]`` alone (``y ~ normal(mu[z], sigma)`` with ``y: real[N]``), which
:func:`plan` checks on the expressions before anything runs; the cost is ``K`` evaluations, not
``K^N``.

After sampling, :meth:`Enumerated.log_table` at each posterior draw gives the conditional
log-probabilities of every value of ``z`` (per element), from which ``z`` is drawn.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp

from gendsl.core.ast import BinOp, Call, Index, Name, Unary, unparse, walk
from gendsl.core.signatures import Spec
from gendsl.errors import GenSemanticError
from gendsl.numerics.expr import evaluate
from gendsl.registry import DISTRIBUTIONS

__all__ = ["Enumerated", "plan", "deterministic_value"]

#: functions that act element by element (a value depending on z[i] stays at index i)
ELEMENTWISE = frozenset({"exp", "log", "sqrt", "abs", "sigmoid", "tanh", "softplus", "log1p", "expm1", "sin", "cos",
                         "logit", "square", "inv_logit", "floor", "ceil", "lgamma", "digamma", "erf", "log_sigmoid",
                         "sign", "pow", "min", "max", "where"})


def deterministic_value(node, values: dict) -> jax.Array:
    """The value of a deterministic node from the values of its parents, broadcast to its type's shape."""
    env = {p: values[p] for p in node.var.parents if p in values}
    return jnp.broadcast_to(node.compute(env), tuple(int(d) for d in node.type.shape))


@dataclass(frozen=True)
class Enumerated:
    """A discrete latent summed out of the log joint.

    Attributes
    ----------
    name:
        The latent's name.
    shape:
        Its shape ``S``: ``()`` for a scalar, ``(N,)`` for ``int[N]`` independent elements.
    size:
        Its number of values ``K`` (``0 .. K-1``).
    recomputed:
        The deterministic nodes that depend on it, recomputed at each value (topological order).
    terms:
        The stochastic nodes whose log-density depends on it, itself first.
    """

    name: str
    shape: tuple[int, ...]
    size: int
    recomputed: tuple[str, ...]
    terms: tuple[str, ...]

    def log_table(self, lowered, values: dict, params: dict) -> jax.Array:
        """``log p(z = k, everything it touches)`` for each value ``k``: shape ``(K, *S)``.

        ``values`` holds every node's value (``z``'s own is replaced); for a vector ``z``,
        element ``i`` of the table sums the terms' elements scored with ``z[i] = k``.
        """

        def at(k):
            v = dict(values)
            v[self.name] = jnp.full(self.shape, k, jnp.int32)
            for name in self.recomputed:
                v[name] = deterministic_value(lowered.node(name), v)
            total = jnp.zeros(self.shape)
            for name in self.terms:
                total = total + self._score(lowered.node(name), v, params.get(name, {}))
            return total

        return jax.vmap(at)(jnp.arange(self.size))

    def _score(self, node, values, node_params) -> jax.Array:
        given = {p: values[p] for p in node.mechanism.ctx.parents}
        x = values[node.name]
        if not self.shape:
            one = jax.tree_util.tree_map(lambda a: a[None], (x, given))
            return node.mechanism.log_prob(node_params, *one)[0]
        lp = node.mechanism.distribution(given).log_prob(x)
        return lp.reshape(*self.shape, -1).sum(-1)


#: a distribution row's event rule -> the event axes of its i-th argument (``categorical``'s probabilities: 1)
_ARGUMENT_EVENT = {"broadcast": lambda i: 0, "drop_last": lambda i: 1 if i == 0 else 0, "first": lambda i: 1,
                   "mvn": lambda i: i + 1, "lkj": lambda i: 0}


def _arguments(spec: Spec) -> list[tuple[object, int]]:
    """Every expression argument of a right-hand side, with its event axes (nested specs included)."""
    if spec.category == "distribution":
        signature = DISTRIBUTIONS[spec.name].signature
        return [(spec[p.name], _ARGUMENT_EVENT[signature.event](i)) for i, p in enumerate(signature.params)]
    out = []
    for value in spec.options.values():
        if isinstance(value, Spec):
            out += _arguments(value)
        elif value is not None and not isinstance(value, (str, int, float, tuple)):
            out.append((value, 0))
    return out


class _Alignment:
    """Whether element ``i`` of an expression's value depends on ``z[i]`` alone (for a vector ``z``).

    ``depends(expr)`` is False when the value does not depend on ``z``, True when it does element
    by element (its leading axes are ``z``'s), and raises when it mixes elements (a sum, a
    product of matrices, an index into a value that depends on ``z``, a broadcast that adds axes).
    """

    def __init__(self, z: str, aligned: set[str], structs: dict, dims: dict, where: str):
        self.z, self.aligned, self.structs, self.dims, self.where = z, aligned, structs, dims, where

    def ndim(self, expr) -> int:
        return len(jax.eval_shape(lambda env: jnp.asarray(evaluate(expr, {**self.dims, **env})), self.structs).shape)

    def refuse(self, expr, why: str):
        raise GenSemanticError(
            f"cannot sum out the discrete latent '{self.z}' element by element: in {self.where}, "
            f"'{unparse(expr)[:60]}' {why}. Each element of a variable that depends on '{self.z}' must use only the "
            f"same element of '{self.z}' (as in normal(mu[{self.z}], sigma)); or pass '{self.z}' as data", expr.span)

    def depends(self, expr) -> bool:
        if isinstance(expr, Name):
            return expr.id in self.aligned
        if not any(isinstance(e, Name) and e.id in self.aligned for e in walk(expr)):
            return False
        if isinstance(expr, Unary):
            return self.depends(expr.operand)
        if isinstance(expr, (BinOp, Call)) and (isinstance(expr, BinOp) or expr.func in ELEMENTWISE):
            args = [expr.left, expr.right] if isinstance(expr, BinOp) else list(expr.args)
            out = self.ndim(expr)
            if any(self.depends(a) and self.ndim(a) != out for a in args):
                self.refuse(expr, "broadcasts a value that depends on it against more axes")
            return True
        if isinstance(expr, Index):
            if self.depends(expr.value):
                self.refuse(expr, "indexes into a value that depends on it")
            dependent = [i for i in expr.indices if self.depends(i)]
            if any(self.ndim(i) != self.ndim(dependent[0]) for i in dependent) or any(
                    self.ndim(i) != 0 for i in expr.indices if i not in dependent):
                self.refuse(expr, "mixes its index with other array indices")
            return True
        self.refuse(expr, "combines several of its elements" if isinstance(expr, Call) else "is not elementwise")


def _refuse(node, message: str):
    raise GenSemanticError(message, node.var.span)


def _enumerable(node, supports: dict) -> int:
    """The number of values of a discrete latent, or a clear refusal."""
    name = node.name
    mech = node.mechanism
    if "distribution" not in type(mech).capabilities:
        _refuse(node, f"'{name}' is a discrete latent variable ({node.type}) made by {mech.describe()['mechanism']}; "
                      f"only leaf distributions with finitely many values (bernoulli, categorical) are summed out: "
                      f"pass '{name}' as data or give it such a distribution")
    size = supports.get(name)
    if size is None:
        _refuse(node, f"'{name}' is a discrete latent variable ({node.type}) with infinitely many values "
                      f"({mech.ctx.spec.name}); the gradient-based kernels need continuous latents and only discrete "
                      f"latents with finitely many values (bernoulli, categorical) are summed out: pass '{name}' as "
                      f"data, or sum it out by hand over a truncated range of its values")
    if size < 0:
        _refuse(node, f"'{name}' is a discrete latent variable ({node.type}) whose number of values is not known "
                      f"before the data ({mech.ctx.spec.name}); use categorical(probs) over its values instead")
    return size


def _child_rules(z, node, child, vector: bool, batch: tuple) -> None:
    """Refuse a term of ``z`` that enumeration cannot score exactly."""
    mech = child.mechanism
    if mech.kind != "exact":
        _refuse(child, f"'{child.name}' depends on the discrete latent '{z}' but its density is {mech.kind}; "
                       f"summing '{z}' out needs a normalised density: pass '{z}' as data")
    if vector and "distribution" not in type(mech).capabilities:
        _refuse(child, f"'{child.name}' depends on the vector of discrete latents '{z}' and is made by "
                       f"{mech.describe()['mechanism']}; only leaf distributions can be scored element by element")
    if vector and tuple(batch[:len(node.type.shape)]) != tuple(int(d) for d in node.type.shape):
        _refuse(child, f"'{child.name}' (elements of shape {list(batch)}) depends on '{z}' of shape "
                       f"{[int(d) for d in node.type.shape]}: element i of '{child.name}' must be scored with '{z}[i]', "
                       f"so its leading axes must be those of '{z}'")


def plan(lowered, latents: tuple[str, ...], discrete: tuple[str, ...], structs: dict, supports: dict,
         batches: dict) -> tuple[Enumerated, ...]:
    """Check and lay out the summing out of each discrete latent.

    Parameters
    ----------
    lowered:
        The lowered graph.
    latents, discrete:
        The continuous latents (sampled) and the discrete ones (summed out).
    structs:
        Every node's value as a ``jax.ShapeDtypeStruct`` (for the shapes of expressions).
    supports:
        Discrete latent -> its number of values (-1 when not known before the data; absent when infinite).
    batches:
        Stochastic node -> the batch shape of its per-example numpyro distribution (nodes that have one).

    Raises
    ------
    GenSemanticError
        Naming the variable, for what cannot be summed out exactly: infinite supports, discrete
        latents that depend on each other, children whose density is not normalised, continuous
        latents whose support moves with the discrete one, elements that mix elements of a vector.
    """
    out, owner = [], {}
    for z in discrete:
        node = lowered.node(z)
        size = _enumerable(node, supports)
        shape = tuple(int(d) for d in node.type.shape)
        reached, recomputed, terms = {z}, [], [z]
        for other in lowered.nodes:
            if other.name == z or other.var.scope == "generated" or not reached & set(other.var.parents):
                continue
            if other.var.role == "deterministic":
                reached.add(other.name)
                recomputed.append(other.name)
            elif other.mechanism is not None:
                terms.append(other.name)
        for name in terms[1:]:
            child = lowered.node(name)
            if name in discrete:
                _refuse(child, f"the discrete latent '{name}' depends on the discrete latent '{z}': they are summed "
                               f"out one at a time, so each must depend only on continuous variables; for a Markov "
                               f"chain of hidden states use hmm(...)")
            if name in owner:
                _refuse(child, f"'{name}' depends on two discrete latents, '{owner[name]}' and '{z}'; each term may "
                               f"depend on one only (write them as one categorical over the pairs of values)")
            owner[name] = z
            if name in latents and getattr(getattr(child.mechanism, "row", None), "signature", None) is None:
                _refuse(child, f"the latent '{name}' depends on the discrete latent '{z}' through "
                               f"{child.mechanism.describe()['mechanism']}; only leaf distributions can")
            if name in latents and child.mechanism.row.signature.support == "interval":
                _refuse(child, f"the support of the latent '{name}' depends on the discrete latent '{z}'; summing "
                               f"'{z}' out needs a support that stays put (give '{name}' another distribution)")
            _child_rules(z, node, child, bool(shape), batches.get(name, ()))
        if shape:
            _check_aligned(lowered, z, recomputed, terms, structs, batches)
        out.append(Enumerated(z, shape, size, tuple(recomputed), tuple(terms)))
    return tuple(out)


def _check_aligned(lowered, z: str, recomputed: list[str], terms: list[str], structs: dict, batches: dict) -> None:
    aligned = {z}
    for name in recomputed:
        node = lowered.node(name)
        check = _Alignment(z, aligned, structs, lowered.dim_values, f"'{name}'")
        if check.depends(node.var.rhs) and check.ndim(node.var.rhs) != len(node.type.shape):
            check.refuse(node.var.rhs, f"is broadcast to the shape of '{name}', {list(node.type.shape)}")
        aligned.add(name)
    for name in terms[1:]:
        node = lowered.node(name)
        check = _Alignment(z, aligned, structs, lowered.dim_values, f"the distribution of '{name}'")
        batch = len(batches[name])
        for expr, event in _arguments(node.var.spec):
            if check.depends(expr) and check.ndim(expr) - event != batch:
                check.refuse(expr, f"is broadcast to the {batch} batch axes of '{name}'")
