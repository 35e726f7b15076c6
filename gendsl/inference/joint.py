"""The log joint of a model's latent variables, in unconstrained space.

For one data set (single examples, no batch axis), :class:`LogJoint` walks the lowered graph in
topological order: each latent is read from a flat unconstrained vector, moved into its support
through numpyro's ``biject_to`` (the support is evaluated there, so it may depend on other
latents, as in ``uniform(low, high)``), and every stochastic node adds its mechanism's
log-density (leaf distributions, energies, trained mechanisms alike), latents adding the
log-Jacobian of their transform, and each ``target +=`` term adds its sum. Deterministic
quantities are computed on the way. ``generated`` nodes are outside the density: they are drawn
(``~``) or computed (``=``) only by :meth:`LogJoint.constrain`, with a key of their own.

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
from gendsl.core.ast import Call, walk
from gendsl.errors import GenDataError, GenRuntimeError, GenSemanticError, ImproperPriorWarning
from gendsl.inference.discrete import deterministic_value, plan
from gendsl.numerics.ode import STEP_LIMIT_ADVICE

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


def _support_size(d) -> int:
    """The number of values of a distribution with an enumerable support (-1: not known before the data)."""
    try:
        return int(d.enumerate_support(expand=False).shape[0])
    except (NotImplementedError, jax.errors.ConcretizationTypeError, TypeError):
        return -1


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
        free = [n for n in lowered.stochastic if n.name not in conditioned and n.var.scope != "generated"]
        #: the continuous latents, sampled in the flat unconstrained vector
        self.latents = tuple(n.name for n in free if not n.type.discrete)
        #: the discrete latents, summed out (their posterior is recovered per draw)
        self.discrete = tuple(n.name for n in free if n.type.discrete)
        for node in lowered.stochastic:
            if node.mechanism.kind == "unavailable":
                raise GenSemanticError(
                    f"'{node.name}' is made by {node.mechanism.describe()['mechanism']}, which has no likelihood, "
                    f"so it cannot enter a posterior; give it a mechanism with a density", node.var.span)
        self._warn_intractable(conditioned)
        self._warn_improper()
        depends = set(self.latents) | set(self.discrete)
        tracked = []
        for node in lowered.nodes:
            if node.var.role == "deterministic" and depends & set(node.var.parents):
                depends.add(node.name)
                if not node.var.scope:
                    tracked.append(node.name)
        #: deterministic quantities that depend on a latent (returned beside the latents); not
        #: ``local`` nor ``generated`` ones
        self.tracked = tuple(tracked)
        #: the ``generated`` quantities, drawn or computed per draw by :meth:`constrain`
        self.generated = tuple(n.name for n in lowered.nodes if n.var.scope == "generated")
        #: the generated quantities drawn with ``~`` (the posterior predictive ones)
        self.predictive = tuple(n.name for n in lowered.nodes if n.var.scope == "generated" and n.var.stochastic)
        #: where each latent lives in the flat unconstrained vector
        self.blocks, probed = self._layout(data, params)
        #: how each discrete latent is summed out
        self.enumerated = plan(lowered, self.latents, self.discrete, *probed)
        self._summed = {name for g in self.enumerated for name in g.terms}
        self._refuse_factors_of_discrete(lowered)

    def _refuse_factors_of_discrete(self, lowered) -> None:
        """A ``target +=`` term that reads a summed-out discrete latent would be scored at one
        value of it only: refused, naming the term and the latent."""
        reach = {name: name for name in self.discrete}
        for node in lowered.nodes:
            if node.var.role == "deterministic":
                for parent in node.var.parents:
                    if parent in reach:
                        reach.setdefault(node.name, reach[parent])
        for factor in lowered.factors:
            hit = [reach[p] for p in factor.parents if p in reach]
            if hit:
                raise GenSemanticError(f"{factor.factor.label} reads the discrete latent '{hit[0]}', which inference "
                                       "sums out; write that term as a distribution of a variable instead",
                                       factor.factor.span)

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
    def _layout(self, data: Mapping[str, jax.Array], params: Mapping[str, Any]) -> tuple[tuple[Block, ...], tuple]:
        """The :class:`Block` of every latent, and what :func:`~gendsl.inference.discrete.plan` is
        told: every value's shape and dtype, the number of values of each discrete latent and the
        batch shape of each node that is a numpyro distribution.

        The supports are evaluated abstractly (``jax.eval_shape``) at the data's shapes, so a
        support that depends on other latents is sized without values.
        """
        shapes, structs, supports, batches = {}, {}, {}, {}

        def probe(data, params):
            values = dict(data)
            for node in self.lowered.nodes:
                if node.var.role == "deterministic":
                    values[node.name] = self._compute(node, values)
                elif node.mechanism is not None and node.name not in data:
                    shape = tuple(int(d) for d in node.type.shape)
                    if node.name in self.latents:
                        support = node.mechanism.support(params.get(node.name, {}), self._given(node, values))
                        shapes[node.name] = tuple(biject_to(support).inverse_shape(shape))
                    values[node.name] = jnp.zeros(shape, dtype_for(node.type.base))
                if node.mechanism is not None and "distribution" in type(node.mechanism).capabilities:
                    d = node.mechanism.distribution(self._given(node, values))
                    batches[node.name] = tuple(d.batch_shape)
                    if node.name in self.discrete and d.has_enumerate_support:
                        supports[node.name] = _support_size(d)
            structs.update({k: jax.ShapeDtypeStruct(jnp.shape(v), jnp.result_type(v)) for k, v in values.items()})
            return 0

        jax.eval_shape(probe, dict(data), dict(params))
        blocks, offset = [], 0
        for name in self.latents:
            node = self.lowered.node(name)
            block = Block(name, tuple(int(d) for d in node.type.shape), shapes[name], offset)
            blocks.append(block)
            offset += block.size
        return tuple(blocks), (structs, supports, batches)

    @property
    def dim(self) -> int:
        """Size of the flat unconstrained vector."""
        return sum(b.size for b in self.blocks)

    # -- the walk ------------------------------------------------------------------------------
    @staticmethod
    def _given(node, values) -> dict:
        return {p: values[p] for p in node.mechanism.ctx.parents}

    _compute = staticmethod(deterministic_value)

    def _walk(self, z: jax.Array, data: Mapping[str, jax.Array], params: Mapping[str, Any],
              discrete: Mapping[str, jax.Array] | None = None, generate: jax.Array | None = None):
        """values (every node, constrained), log-densities and log-Jacobians (per stochastic node)
        at the point ``z``. The discrete latents take their values in ``discrete`` (0 where not given).
        The generated nodes are drawn with keys folded from ``generate``, and left out without one."""
        blocks = {b.name: b for b in self.blocks}
        values, terms, jacobians = dict(data), {}, {}
        for i, node in enumerate(self.lowered.nodes):
            if node.var.scope == "generated":
                if generate is None:
                    continue
                if node.mechanism is not None:
                    given = _one(self._given(node, values))
                    key = jax.random.fold_in(generate, i)
                    values[node.name] = node.mechanism.sample(params.get(node.name, {}), key, 1, given)[0]
                    continue
            if node.var.role == "deterministic":
                values[node.name] = self._compute(node, values)
                continue
            if node.mechanism is None:
                continue
            node_params = params.get(node.name, {})
            given = self._given(node, values)
            if node.name in blocks:
                b = blocks[node.name]
                u = jax.lax.dynamic_slice_in_dim(z, b.offset, b.size).reshape(b.unconstrained_shape)
                transform = biject_to(node.mechanism.support(node_params, given))
                x = transform(u)
                jacobians[node.name] = jnp.sum(transform.log_abs_det_jacobian(u, x))
                values[node.name] = x
            elif node.name in self.discrete:
                zeros = jnp.zeros(tuple(int(d) for d in node.type.shape), jnp.int32)
                values[node.name] = (discrete or {}).get(node.name, zeros)
            terms[node.name] = node.mechanism.log_prob(node_params, _one(values[node.name]), _one(given))[0]
        for factor in self.lowered.factors:
            terms[factor.factor.label] = factor.compute({p: values[p] for p in factor.parents if p in values})
        return values, terms, jacobians

    def logdensity(self, z: jax.Array, data: Mapping[str, jax.Array], params: Mapping[str, Any]) -> jax.Array:
        """Log joint density at the unconstrained point ``z`` (shape ``(dim,)``), Jacobians included
        and discrete latents summed out: scalar."""
        return sum(self.terms(z, data, params).values())

    def terms(self, z: jax.Array, data, params) -> dict[str, jax.Array]:
        """Each stochastic node's contribution to :meth:`logdensity` (latents: with their Jacobian),
        and each ``target +=`` term's (keyed ``target (line N)``). A discrete latent's term is its
        marginal: the log-sum-exp over its values of its own log-probability and those of every
        node that depends on it (which then have no term of their own beyond a latent's Jacobian)."""
        values, terms, jacobians = self._walk(z, data, params)
        out = {name: lp + jacobians.get(name, 0.0) for name, lp in terms.items() if name not in self._summed}
        for group in self.enumerated:
            marginal = jnp.sum(jax.scipy.special.logsumexp(group.log_table(self.lowered, values, params), axis=0))
            out[group.name] = marginal + sum(jacobians.get(name, 0.0) for name in group.terms)
        return out

    @property
    def observed(self) -> tuple[str, ...]:
        """The observed nodes with a log-likelihood of their own: :meth:`log_likelihood`'s keys (a
        node that depends on a discrete latent is summed into that latent's marginal instead)."""
        given = {b.name for b in self.blocks} | set(self.discrete)
        return tuple(n.name for n in self.lowered.stochastic
                     if n.var.role == "observed" and n.name not in given and n.name not in self._summed)

    def log_likelihood(self, z: jax.Array, data, params) -> dict[str, jax.Array]:
        """Pointwise log-likelihood at the unconstrained point ``z``: for each name of
        :attr:`observed`, the log-density of each of its independent elements given the latents
        (a leaf distribution: shape the variable's batch shape; another mechanism: one value)."""
        values = self._walk(z, data, params)[0]
        out = {}
        for name in self.observed:
            node = self.lowered.node(name)
            out[name] = node.mechanism.log_prob_elements(params.get(name, {}), values[name], self._given(node, values))
        return out

    def constrain(self, z: jax.Array, data, params, key: jax.Array | None = None) -> dict[str, jax.Array]:
        """The latents, the tracked deterministic quantities and the generated ones at ``z``, in their
        own spaces.

        Each discrete latent is drawn from its conditional distribution given ``z`` (with ``key``;
        without one, its most probable value), and the tracked quantities use that draw. The
        generated ``~`` quantities are drawn with a key folded from ``key`` (its own stream: the
        discrete draws do not change when generated statements are added).
        """
        generate = jax.random.fold_in(jax.random.key(0) if key is None else key, len(self.enumerated))
        if not self.enumerated:
            values = self._walk(z, data, params, generate=generate)[0]
            return {name: values[name] for name in (*self.latents, *self.tracked, *self.generated)}
        values, drawn = self._walk(z, data, params)[0], {}
        keys = jax.random.split(jax.random.key(0) if key is None else key, len(self.enumerated))
        for k, (name, logits) in zip(keys, self.conditionals(z, data, params).items()):
            logits = jnp.moveaxis(logits, -1, 0)
            drawn[name] = jnp.argmax(logits, 0) if key is None else jax.random.categorical(k, logits, axis=0)
        values = self._walk(z, data, params, drawn, generate)[0]
        return {name: values[name] for name in (*self.latents, *self.discrete, *self.tracked, *self.generated)}

    @property
    def reported(self) -> tuple[str, ...]:
        """The nodes :meth:`conditionals` reports: the discrete latents, then every node with hidden
        states (capability ``"hidden_states"``, as ``hmm(...)``)."""
        hidden = tuple(n.name for n in self.lowered.stochastic if "hidden_states" in type(n.mechanism).capabilities)
        return (*self.discrete, *hidden)

    def conditionals(self, z: jax.Array, data, params) -> dict[str, jax.Array]:
        """Conditional log-probabilities given the continuous point ``z``, for each name in
        :attr:`reported`: a discrete latent's, shape ``(*S, K)`` (``[..., k]``: log p(element = k |
        z, data)); a node with hidden states, those states' (``hmm``: ``(T, K)``)."""
        if not self.reported:
            return {}
        values = self._walk(z, data, params)[0]
        out = {}
        for group in self.enumerated:
            table = group.log_table(self.lowered, values, params)
            out[group.name] = jnp.moveaxis(table - jax.scipy.special.logsumexp(table, axis=0), 0, -1)
        for name in self.reported[len(self.discrete):]:
            node = self.lowered.node(name)
            out[name] = node.mechanism.hidden_states(values[name], self._given(node, values))
        return out

    def unconstrain(self, init: Mapping[str, Any], z: jax.Array, data, params) -> jax.Array:
        """Replace in ``z`` the blocks of the latents given (constrained) in ``init``.

        Values are placed in topological order, so a support that depends on other latents is
        evaluated at their new values.

        Raises
        ------
        GenDataError
            For a name that is not a latent, a value of the wrong shape, or outside its support.
        """
        summed = sorted(set(init) & set(self.discrete))
        if summed:
            raise GenDataError(f"init gives '{summed[0]}', a discrete latent that is summed out, not sampled: "
                               f"leave it out of init")
        unknown = sorted(set(init) - set(self.latents))
        if unknown:
            raise GenDataError(f"init gives {', '.join(map(repr, unknown))}, which {'is' if len(unknown) == 1 else 'are'} "
                               f"not latent (latents: {', '.join(self.latents)})")
        for b in self.blocks:
            if b.name not in init:
                continue
            node = self.lowered.node(b.name)
            values = self._walk(z, data, params)[0]
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
            advice = f"; if {STEP_LIMIT_ADVICE}" if _solves_odes(self.lowered.model) else ""
            raise GenRuntimeError(
                "could not find a starting point with a finite log-density: " + "; ".join(parts)
                + ". Check that the data lie in the supports of their distributions, or pass init={...}" + advice,
                self.lowered.model.span)


def _solves_odes(model) -> bool:
    """Whether an expression of ``model`` (a right-hand side or a ``target +=`` term) calls ``ode``."""
    exprs = [v.rhs for v in model.variables() if v.rhs is not None] + [f.expr for f in model.factors]
    return any(isinstance(e, Call) and e.func == "ode" for x in exprs for e in walk(x))
