"""The log joint of a model's latent variables, in unconstrained space.

For one data set (single examples, no batch axis), :class:`LogJoint` walks the lowered graph in
topological order: each latent is read from a flat unconstrained vector, moved into its support
through numpyro's ``biject_to`` (the support is evaluated there, so it may depend on other
latents, as in ``uniform(low, high)``), and every stochastic node adds its mechanism's
log-density (leaf distributions, energies, trained mechanisms alike), latents adding the
log-Jacobian of their transform, and each ``target +=`` term adds its sum. Deterministic
quantities are computed on the way.

The data and the parameters are arguments of every method (never closed over), so a jitted
caller is traced once per model and data shapes.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any, Mapping

import jax
import jax.numpy as jnp
from numpyro.distributions.transforms import biject_to

from gendsl.compiler.bind import dtype_for
from gendsl.errors import GenDataError, GenRuntimeError, GenSemanticError, ImproperPriorWarning

__all__ = ["Block", "LogJoint"]


@dataclass(frozen=True)
class Block:
    """Where one latent lives in the flat unconstrained vector."""

    name: str
    shape: tuple[int, ...]  # constrained (the variable's) shape
    unconstrained_shape: tuple[int, ...]
    offset: int

    @property
    def size(self) -> int:
        return math.prod(self.unconstrained_shape)


def _one(tree):
    return jax.tree_util.tree_map(lambda v: v[None], tree)


class LogJoint:
    """The log joint density of the latent nodes of ``lowered`` given every other node.

    Parameters
    ----------
    lowered:
        The :class:`~gendsl.compiler.Lowered` graph.
    conditioned:
        Names of the stochastic nodes whose values are given (observed); every other stochastic
        node is latent.
    data, params:
        Example data and parameters: only their shapes are used, to size the latents' blocks.

    Raises
    ------
    GenSemanticError
        A discrete latent (gradient-based kernels need continuous ones), or a node without a
        likelihood.
    """

    def __init__(self, lowered, conditioned, data: Mapping[str, jax.Array], params: Mapping[str, Any]):
        self.lowered = lowered
        conditioned = set(conditioned)
        self.latents = tuple(n.name for n in lowered.stochastic if n.name not in conditioned)
        for node in lowered.stochastic:
            if node.mechanism.kind == "unavailable":
                raise GenSemanticError(
                    f"'{node.name}' is made by {node.mechanism.describe()['mechanism']}, which has no likelihood, "
                    f"so it cannot enter a posterior; give it a mechanism with a density", node.var.span)
            if node.name in self.latents and node.type.discrete:
                raise GenSemanticError(
                    f"'{node.name}' is a discrete latent variable ({node.type}); the gradient-based kernels need "
                    f"continuous latents: pass '{node.name}' as data or marginalise it out of the model", node.var.span)
        self._warn_intractable(conditioned)
        self._warn_improper()
        depends = set(self.latents)
        tracked = []
        for node in lowered.nodes:
            if node.var.role == "deterministic" and depends & set(node.var.parents):
                depends.add(node.name)
                tracked.append(node.name)
        #: deterministic quantities that depend on a latent (returned beside the latents)
        self.tracked = tuple(tracked)
        #: where each latent lives in the flat unconstrained vector
        self.blocks = self._layout(data, params)

    def _warn_intractable(self, conditioned):
        for node in self.lowered.stochastic:
            if node.mechanism.kind != "unnormalized":
                continue
            latent_parents = [p for p in node.mechanism.ctx.parents if p in self.latents]
            if latent_parents:
                warnings.warn(
                    f"the unnormalized density of '{node.name}' depends on the latent variable(s) "
                    f"{', '.join(latent_parents)}: its normalising constant is ignored, so the posterior "
                    f"over them is only right if that constant does not depend on them", stacklevel=3)

    def _warn_improper(self):
        flat = [n.name for n in self.lowered.stochastic if n.name in self.latents and n.mechanism.improper]
        if flat:
            warnings.warn(
                f"the prior of {', '.join(repr(n) for n in flat)} is flat (improper): the posterior is proper only if "
                f"the likelihood makes it so; give {'it' if len(flat) == 1 else 'them'} a distribution with '~' "
                f"if the draws drift", ImproperPriorWarning, stacklevel=3)

    # -- layout --------------------------------------------------------------------------------
    def _layout(self, data: Mapping[str, jax.Array], params: Mapping[str, Any]) -> tuple[Block, ...]:
        """The :class:`Block` of every latent.

        The supports are evaluated abstractly (``jax.eval_shape``) at the data's shapes, so a
        support that depends on other latents is sized without values.
        """
        shapes = {}

        def probe(data, params):
            values = dict(data)
            for node in self.lowered.nodes:
                if node.var.role == "deterministic":
                    values[node.name] = self._compute(node, values)
                elif node.name in self.latents:
                    support = node.mechanism.support(params.get(node.name, {}), self._given(node, values))
                    shape = tuple(int(d) for d in node.type.shape)
                    shapes[node.name] = tuple(biject_to(support).inverse_shape(shape))
                    values[node.name] = jnp.zeros(shape, dtype_for(node.type.base))
            return 0

        jax.eval_shape(probe, dict(data), dict(params))
        blocks, offset = [], 0
        for name in self.latents:
            node = self.lowered.node(name)
            block = Block(name, tuple(int(d) for d in node.type.shape), shapes[name], offset)
            blocks.append(block)
            offset += block.size
        return tuple(blocks)

    @property
    def dim(self) -> int:
        """Size of the flat unconstrained vector."""
        return sum(b.size for b in self.blocks)

    # -- the walk ------------------------------------------------------------------------------
    @staticmethod
    def _given(node, values) -> dict:
        return {p: values[p] for p in node.mechanism.ctx.parents}

    @staticmethod
    def _compute(node, values) -> jax.Array:
        env = {p: values[p] for p in node.var.parents if p in values}
        return jnp.broadcast_to(node.compute(env), tuple(int(d) for d in node.type.shape))

    def _walk(self, z: jax.Array, data: Mapping[str, jax.Array], params: Mapping[str, Any]):
        """values (every node, constrained) and terms (per stochastic node) at the point ``z``."""
        blocks = {b.name: b for b in self.blocks}
        values, terms = dict(data), {}
        for node in self.lowered.nodes:
            if node.var.role == "deterministic":
                values[node.name] = self._compute(node, values)
                continue
            if node.mechanism is None:
                continue
            node_params = params.get(node.name, {})
            given = self._given(node, values)
            jacobian = 0.0
            if node.name in blocks:
                b = blocks[node.name]
                u = jax.lax.dynamic_slice_in_dim(z, b.offset, b.size).reshape(b.unconstrained_shape)
                transform = biject_to(node.mechanism.support(node_params, given))
                x = transform(u)
                jacobian = jnp.sum(transform.log_abs_det_jacobian(u, x))
                values[node.name] = x
            lp = node.mechanism.log_prob(node_params, _one(values[node.name]), _one(given))[0]
            terms[node.name] = lp + jacobian
        for factor in self.lowered.factors:
            terms[factor.factor.label] = factor.compute({p: values[p] for p in factor.parents if p in values})
        return values, terms

    def logdensity(self, z: jax.Array, data: Mapping[str, jax.Array], params: Mapping[str, Any]) -> jax.Array:
        """Log joint density at the unconstrained point ``z`` (shape ``(dim,)``), Jacobians included: scalar."""
        _, terms = self._walk(z, data, params)
        return sum(terms.values())

    def terms(self, z: jax.Array, data, params) -> dict[str, jax.Array]:
        """Each stochastic node's contribution to :meth:`logdensity` (latents: with their Jacobian),
        and each ``target +=`` term's (keyed ``target (line N)``)."""
        return self._walk(z, data, params)[1]

    def constrain(self, z: jax.Array, data, params) -> dict[str, jax.Array]:
        """The latents and the tracked deterministic quantities at ``z``, in their own spaces."""
        values, _ = self._walk(z, data, params)
        return {name: values[name] for name in (*self.latents, *self.tracked)}

    def unconstrain(self, init: Mapping[str, Any], z: jax.Array, data, params) -> jax.Array:
        """Replace in ``z`` the blocks of the latents given (constrained) in ``init``.

        Values are placed in topological order, so a support that depends on other latents is
        evaluated at their new values.

        Raises
        ------
        GenDataError
            For a name that is not a latent, a value of the wrong shape, or outside its support.
        """
        unknown = sorted(set(init) - set(self.latents))
        if unknown:
            raise GenDataError(f"init gives {', '.join(map(repr, unknown))}, which {'is' if len(unknown) == 1 else 'are'} "
                               f"not latent (latents: {', '.join(self.latents)})")
        for b in self.blocks:
            if b.name not in init:
                continue
            node = self.lowered.node(b.name)
            values, _ = self._walk(z, data, params)
            value = jnp.asarray(init[b.name], dtype=z.dtype)
            if value.shape != b.shape:
                raise GenDataError(f"init['{b.name}'] has shape {list(value.shape)}, expected {list(b.shape)}",
                                   node.var.span)
            support = node.mechanism.support(params.get(b.name, {}), self._given(node, values))
            if not bool(jnp.all(support(value))):
                raise GenDataError(f"init['{b.name}'] lies outside the support of '{b.name}'", node.var.span)
            u = biject_to(support).inv(value).reshape(-1)
            z = jax.lax.dynamic_update_slice_in_dim(z, u, b.offset, 0)
        return z

    def check_finite(self, z: jax.Array, data, params) -> None:
        """Raise a :class:`GenRuntimeError` naming the nodes whose log-density (or its gradient) is
        not finite at ``z``."""
        terms = self.terms(z, data, params)
        grads = jax.grad(lambda q: self.logdensity(q, data, params))(z)
        bad = [name for name, t in terms.items() if not bool(jnp.isfinite(t))]
        bad_grad = [b.name for b in self.blocks
                    if not bool(jnp.all(jnp.isfinite(grads[b.offset:b.offset + b.size])))]
        if bad or bad_grad:
            parts = []
            if bad:
                parts.append("the log-density of " + ", ".join(f"'{n}' is {float(terms[n]):g}" for n in bad))
            if bad_grad:
                parts.append("the gradient with respect to " + ", ".join(f"'{n}'" for n in bad_grad) + " is not finite")
            raise GenRuntimeError(
                "could not find a starting point with a finite log-density: " + "; ".join(parts)
                + ". Check that the data lie in the supports of their distributions, or pass init={...}",
                self.lowered.model.span)
