"""``factorize``: the autoregressive chain rule p(x) = prod_t p(x_t | x_<t, given).

The variable's elements (the tokens of ``token[N] of V``, or the coordinates of a flattened real
array) are modelled one at a time by a network whose output ``t`` depends only on ``x_<t`` (a
:class:`~gendsl.nn.mlp.MADE` or a causal :class:`~gendsl.nn.mlp.Transformer`) and on the ``given=``
context. Each output parametrises one conditional: a categorical over the vocabulary for tokens,
a mixture of Gaussians for reals. Training is exact maximum likelihood with teacher forcing (one
network pass); sampling is sequential inverse-CDF, ``x_t = F^{-1}(u_t | x_<t)`` with
``u_t ~ U(0, 1)``, as one ``lax.scan`` over positions (using the transformer's key/value cache).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp

from gendsl.core.signatures import Param, Signature
from gendsl.errors import GenSemanticError
from gendsl.mechanisms.base import AbstractMechanism, NodeContext, context_size, context_vector, split_module, type_size
from gendsl.nn.made import MADE
from gendsl.nn.transformer import Transformer

__all__ = ["Categorical", "GaussianMixture", "Factorize"]

#: ``factorize(...)`` in the language
FACTORIZE_SIGNATURE = Signature("factorize", "mechanism", (Param("net", "network"), Param("given", "names", ())),
              "autoregressive chain rule")

#: smallest scale of a mixture component (keeps densities bounded)
MIN_SCALE = 1e-3
#: bisection iterations of the mixture's inverse CDF (halves a ~24-sigma bracket to float32 precision)
BISECTION_STEPS = 40


class Categorical(NamedTuple):
    """Conditional of one token: ``vocab`` logits."""

    vocab: int

    @property
    def size(self) -> int:
        return self.vocab

    def log_prob(self, theta: jax.Array, x: jax.Array) -> jax.Array:
        """theta ``(V,)`` logits, x scalar int -> scalar log-probability."""
        return jax.nn.log_softmax(theta)[x]

    def icdf(self, theta: jax.Array, u: jax.Array) -> jax.Array:
        """The first index whose cumulative probability exceeds ``u`` in [0, 1): scalar int32."""
        c = jnp.cumsum(jax.nn.softmax(theta))
        return jnp.sum(c <= u * c[-1]).astype(jnp.int32)


class GaussianMixture(NamedTuple):
    """Conditional of one real coordinate: ``components`` Gaussians (logits, means, raw scales)."""

    components: int

    @property
    def size(self) -> int:
        return 3 * self.components

    def _split(self, theta: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
        """theta ``(3K,)`` -> log-weights, means, scales, each ``(K,)``; scale = softplus + MIN_SCALE."""
        logits, loc, raw = theta.reshape(3, self.components)
        return jax.nn.log_softmax(logits), loc, jax.nn.softplus(raw) + MIN_SCALE

    def log_prob(self, theta: jax.Array, x: jax.Array) -> jax.Array:
        """theta ``(3K,)``, x scalar -> scalar log-density."""
        logw, loc, scale = self._split(theta)
        return jax.nn.logsumexp(logw + jax.scipy.stats.norm.logpdf(x, loc, scale))

    def _log_tail(self, theta: jax.Array, x: jax.Array, upper: jax.Array) -> jax.Array:
        """theta ``(3K,)``, x scalar -> log F(x), or log(1 - F(x)) when ``upper`` (precise in both tails)."""
        logw, loc, scale = self._split(theta)
        z = (x - loc) / scale
        return jax.nn.logsumexp(logw + jax.scipy.special.log_ndtr(jnp.where(upper, -z, z)))

    def icdf(self, theta: jax.Array, u: jax.Array) -> jax.Array:
        """Solve F(x) = u, u in (0, 1), by bisection on [min(mean - 12 sd), max(mean + 12 sd)]: scalar.

        The comparison is made on log F below the median and on log(1 - F) above it.
        """
        _, loc, scale = self._split(theta)
        upper = u > 0.5
        target = jnp.where(upper, jnp.log1p(-u), jnp.log(u))

        def halve(_, bracket):
            lo, hi = bracket
            mid = 0.5 * (lo + hi)
            tail = self._log_tail(theta, mid, upper)
            below = jnp.where(upper, tail > target, tail < target)
            return jnp.where(below, mid, lo), jnp.where(below, hi, mid)

        lo, hi = jax.lax.fori_loop(0, BISECTION_STEPS, halve, (jnp.min(loc - 12 * scale), jnp.max(loc + 12 * scale)))
        return 0.5 * (lo + hi)


class Factorize(AbstractMechanism):
    """Chain rule over a ``token[N] of V`` or real variable; exact NLL, inverse-CDF sampling.

    Networks: ``transformer(layers, width, heads[, components])`` (causal, key/value cache for
    sampling), ``made(hidden, components, activation)`` and ``mlp(...)`` (the same MADE: for a
    ``token[1]`` it is an MLP over the context alone).
    """

    name = "factorize"
    signature = FACTORIZE_SIGNATURE
    bases = ("real", "token", "int")
    kind = "exact"
    loss_name = "nll"

    @classmethod
    def check_spec(cls, name, spec, vtype, typing) -> None:
        """The network must be autoregressive; a transformer's width must split into its heads."""
        net = spec["net"]
        if net.name not in ("mlp", "made", "transformer"):
            raise GenSemanticError(f"factorize needs an autoregressive network (mlp, made or transformer), "
                                   f"got '{net.name}'", typing.call.span)
        if net.name == "transformer" and (net["heads"] < 1 or net["layers"] < 1 or net["width"] % net["heads"]):
            raise GenSemanticError(
                f"transformer needs layers >= 1 and a width divisible by heads, got layers={net['layers']}, "
                f"width={net['width']}, heads={net['heads']}", typing.call.span)

    def __init__(self, ctx: NodeContext):
        super().__init__(ctx)
        vtype, net = ctx.type, ctx.spec["net"]
        if vtype.base == "token":
            self.family = Categorical(int(vtype.vocab))
        elif vtype.base == "real":
            self.family = GaussianMixture(int(net.get("components", 8)))
        elif vtype.base == "int":
            raise GenSemanticError(
                f"factorize cannot bound the values of '{ctx.name}: {vtype}' (the int type has no range); "
                f"declare it as token[N] of V to model it as tokens", ctx.span)
        else:
            raise GenSemanticError(
                f"factorize models token or real variables, got '{ctx.name}: {vtype}'; "
                f"use a pushforward or evolve mechanism for {vtype.base} values", ctx.span)
        self.net_spec = net
        self.given_names = tuple(ctx.spec.get("given", ()))
        missing = [n for n in self.given_names if n not in ctx.parents]
        if missing:
            raise GenSemanticError(f"given={missing[0]} is not a parent of '{ctx.name}'", ctx.span)
        self.length = ctx.size
        self.context = context_size(ctx.parents, self.given_names)
        self.sampler_name = f"inverse-cdf x {self.length}"
        self._log_conditionals = jax.jit(self._log_conditionals_impl)
        self._sample = jax.jit(self._sample_impl, static_argnames=("n", "cache"))

    # -- parameters ------------------------------------------------------------------------------
    def _build(self, key: jax.Array) -> MADE | Transformer:
        net, vocab = self.net_spec, getattr(self.family, "vocab", None)
        if net.name == "transformer":
            return Transformer(self.length, self.family.size, vocab=vocab, context=self.context,
                               layers=net["layers"], width=net["width"], heads=net["heads"], key=key)
        return MADE(self.length, self.family.size, net["hidden"], vocab=vocab, context=self.context,
                    activation=net.get("activation", "silu"), key=key)

    @functools.cached_property
    def _static(self):
        """The network minus its arrays (built abstractly once; ``eqx.combine`` with params rejoins)."""
        shapes = eqx.filter_eval_shape(self._build, jax.random.key(0))
        return eqx.partition(shapes, lambda leaf: isinstance(leaf, jax.ShapeDtypeStruct))[1]

    def init(self, key: jax.Array):
        """Fresh network parameters (an equinox PyTree of float arrays)."""
        return split_module(self._build(key))[0]

    # -- density ---------------------------------------------------------------------------------
    def _flat(self, x: jax.Array) -> jax.Array:
        x = x.reshape(x.shape[0], self.length)
        return x.astype(jnp.int32) if isinstance(self.family, Categorical) else x.astype(jnp.float32)

    def _log_conditionals_impl(self, params, x, given):
        net = eqx.combine(params, self._static)
        x = self._flat(x)
        theta = net(x, context_vector(given, self.ctx.parents, self.given_names))
        return jax.vmap(jax.vmap(self.family.log_prob))(theta, x)

    def log_conditionals(self, params, x: jax.Array, given: dict | None = None) -> jax.Array:
        """Per-position log p(x_t | x_<t, given): x ``(n, *shape)`` -> ``(n, N)`` (elements flattened)."""
        return self._log_conditionals(params, x, self._given(given))

    def log_prob(self, params, x: jax.Array, given: dict | None = None) -> jax.Array:
        """Exact log-probability (tokens) or log-density (reals): x ``(n, *shape)`` -> ``(n,)``."""
        return jnp.sum(self.log_conditionals(params, x, given), axis=-1)

    # -- sampling --------------------------------------------------------------------------------
    def _sample_impl(self, params, key, given, n: int, cache: bool):
        net = eqx.combine(params, self._static)
        context = context_vector(given, self.ctx.parents, self.given_names)
        discrete = isinstance(self.family, Categorical)
        u = jax.random.uniform(key, (n, self.length), minval=jnp.finfo(jnp.float32).tiny)
        x0 = jnp.zeros((n, self.length), jnp.int32 if discrete else jnp.float32)
        if cache and isinstance(net, Transformer):
            state0 = net.init_cache((n,))

            def one(state, x, t):
                return net.step(state, x[:, jnp.maximum(t - 1, 0)], t, context)
        else:  # recompute the whole prefix: the MADE's way, and the transformer's no-cache baseline
            state0 = None

            def one(state, x, t):
                return net(x, context)[:, t], state

        def body(carry, t):
            x, state = carry
            theta, state = one(state, x, t)
            return (x.at[:, t].set(jax.vmap(self.family.icdf)(theta, u[:, t])), state), None

        (x, _), _ = jax.lax.scan(body, (x0, state0), jnp.arange(self.length))
        return x.reshape(n, *self.ctx.shape)

    def sample(self, params, key: jax.Array, n: int, given: dict | None = None, cache: bool = True) -> jax.Array:
        """``n`` draws by sequential inverse CDF, shape ``(n, *shape)`` (int32 tokens or float32 reals).

        ``cache=False`` makes a transformer recompute the whole prefix at every position instead of
        reading its key/value cache (same draws for the same key; a throughput baseline). MADE
        networks always recompute.
        """
        return self._sample(params, key, self._given(given), n=n, cache=cache)

    # -- the rest of the contract ----------------------------------------------------------------
    def _given(self, given: dict | None) -> dict:
        given = given or {}
        return {name: given[name] for name in self.given_names}

    @classmethod
    def static_cost(cls, spec, vtype, mechanisms) -> int:
        """Network evaluations per sample: one per element (sequential inverse CDF)."""
        return type_size(vtype)

    @classmethod
    def choices(cls, vtype):
        """MADE conditionals for tokens and reals; a causal transformer for token sequences."""
        size = type_size(vtype)
        if vtype.base == "token":
            out = [cls.choice("factorize(made(hidden=[64, 64]))",
                              "categorical conditionals from a masked MLP" + (
                                  f", one pass per token ({size} in sequence)" if size > 1 else ""))]
            if size > 1:
                out.append(cls.choice("factorize(transformer(layers=2, width=64, heads=4))",
                                      f"token sequences: a causal transformer, {size} cached passes per sample"))
            return out
        if vtype.base == "real":
            return [cls.choice("factorize(made(hidden=[64, 64], components=8))",
                               "mixture-of-Gaussians conditionals" + (
                                   f", one pass per element ({size} in sequence)" if size > 1 else ""))]
        return []

    def support(self, params, given_one: dict):
        """Tokens: integers in 0..V-1; reals: the real line in every coordinate."""
        import numpyro.distributions.constraints as c

        if isinstance(self.family, Categorical):
            return c.integer_interval(0, self.family.vocab - 1)
        return c.independent(c.real, len(self.ctx.shape)) if self.ctx.shape else c.real
