"""``y ~ hmm(init=rho, trans=Gamma, emission=normal(mu, sigma))``: a hidden Markov model.

``y`` is a sequence ``[T]`` observed through ``K`` hidden states that form a Markov chain:
``s[0] ~ categorical(init)``, ``s[t] ~ categorical(trans[s[t-1]])`` and ``y[t] ~ emission`` with
the emission's arguments taken at state ``s[t]``: each argument of the emission is a vector over
the states (``mu: real[K]``) or one value shared by all of them. The states are summed out by the
forward algorithm, a ``lax.scan`` over time in log space, so the density is exact and
differentiable in ``init``, ``trans`` and the emission's arguments (Stan's ``hmm_marginal``).
"""

from __future__ import annotations

from dataclasses import replace

import jax
import jax.numpy as jnp
from jax.scipy.special import logsumexp

from gendsl.core.signatures import Param, Signature, Spec
from gendsl.core.types import VarType, broadcast_shapes, shape_str
from gendsl.errors import GenSemanticError
from gendsl.mechanisms.base import AbstractMechanism
from gendsl.mechanisms.leaf import Leaf

__all__ = ["HMM", "HMM_SIGNATURE", "forward", "smoothed"]

HMM_SIGNATURE = Signature(
    "hmm", "mechanism",
    (Param("init", "expr", doc="initial state probabilities [K]"),
     Param("trans", "expr", doc="transition probabilities [K, K], row = the state left"),
     Param("emission", "distribution", doc="a leaf distribution whose arguments are [K] (one per state) or shared")),
    "a sequence [T] emitted by K hidden Markov states, summed out by the forward algorithm")


def _filter(log_init: jax.Array, log_trans: jax.Array, log_emission: jax.Array) -> jax.Array:
    """``(T, K)``: ``log p(y[0..t], s[t] = k)`` for every time and state (the forward pass)."""

    def step(alpha, emission_t):
        alpha = logsumexp(alpha[:, None] + log_trans, axis=0) + emission_t
        return alpha, alpha

    first = log_init + log_emission[0]
    _, later = jax.lax.scan(step, first, log_emission[1:])
    return jnp.concatenate([first[None], later])


def forward(log_init: jax.Array, log_trans: jax.Array, log_emission: jax.Array) -> jax.Array:
    """Log-likelihood of one sequence, its hidden states summed out.

    Parameters
    ----------
    log_init:
        ``(K,)`` log-probabilities of the first state.
    log_trans:
        ``(K, K)`` log-probabilities of moving from state ``i`` (row) to state ``j`` (column).
    log_emission:
        ``(T, K)`` log-density of each observation under each state.

    Returns
    -------
    Scalar ``log sum over state paths of p(path) p(y | path)``.
    """
    return logsumexp(_filter(log_init, log_trans, log_emission)[-1])


def smoothed(log_init: jax.Array, log_trans: jax.Array, log_emission: jax.Array) -> jax.Array:
    """``(T, K)``: ``log p(s[t] = k | y)``, the posterior of each hidden state (forward-backward).

    Arguments as :func:`forward`.
    """
    alpha = _filter(log_init, log_trans, log_emission)

    def step(beta, emission_next):
        beta = logsumexp(log_trans + (emission_next + beta)[None, :], axis=1)
        return beta, beta

    _, earlier = jax.lax.scan(step, jnp.zeros_like(alpha[-1]), log_emission[1:], reverse=True)
    beta = jnp.concatenate([earlier, jnp.zeros_like(alpha[-1:])])
    return alpha + beta - logsumexp(alpha[-1])


def _refuse(message: str, typing) -> None:
    raise GenSemanticError(message, typing.call.span)


class HMM(AbstractMechanism):
    """``y: real[T] ~ hmm(init=..., trans=..., emission=...)``: the states summed out exactly."""

    name = "hmm"
    signature = HMM_SIGNATURE
    bases = ("real", "positive", "unit", "int")
    kind = "exact"
    loss_name = "nll"
    sampler_name = "ancestral (states, then emissions)"
    has_params = False
    #: ``hidden_states(y, env)``: posterior inference reports the states' probabilities per draw
    capabilities = frozenset({"hidden_states"})

    # -- declaration ----------------------------------------------------------------------------
    @classmethod
    def check_spec(cls, name: str, spec: Spec, vtype: VarType, typing) -> None:
        """A sequence ``[T]``; ``init`` ``[K]``; ``trans`` ``[K, K]``; a univariate emission whose
        arguments broadcast to ``[K]`` and whose draws are of the sequence's kind."""
        if len(vtype.shape) != 1:
            _refuse(f"hmm() models a sequence: declare '{name}' with one axis (e.g. real[T]), got {vtype}", typing)
        init, trans = typing.shape_of(spec["init"]), typing.shape_of(spec["trans"])
        if len(init) != 1:
            _refuse(f"hmm(init=...) must be a vector of K state probabilities, got shape {shape_str(init)}", typing)
        if tuple(trans) != (init[0], init[0]):
            _refuse(f"hmm(trans=...) must be a [{init[0]}, {init[0]}] matrix (rows: the state left), got shape "
                    f"{shape_str(trans)}", typing)
        emission = spec["emission"]
        signature = typing.catalog.signatures[emission.name]
        if signature.event != "broadcast":
            _refuse(f"the emission of hmm() must be a univariate distribution such as normal(mu, sigma); got "
                    f"{emission.name}(...)", typing)
        shape = typing.distribution_shape(emission)
        try:
            fits = broadcast_shapes(shape, init) == tuple(init)
        except ValueError:
            fits = False
        if not fits:
            _refuse(f"the arguments of the emission {emission.name}(...) must be one per state ([{init[0]}]) or "
                    f"shared, got shape {shape_str(shape)}", typing)
        if (signature.support == "int") != vtype.discrete:
            _refuse(f"the emission {emission.name}() draws {'integers' if signature.support == 'int' else 'real numbers'} "
                    f"but '{name}' is declared {vtype}", typing)

    @classmethod
    def static_cost(cls, spec, vtype, mechanisms) -> int:
        """No network: 0."""
        return 0

    # -- node -----------------------------------------------------------------------------------
    def __init__(self, ctx):
        super().__init__(ctx)
        self.emission = Leaf(replace(ctx, spec=ctx.spec["emission"]))

    def _chain(self, env: dict) -> tuple[jax.Array, jax.Array]:
        ev = self.ctx.evaluate
        return jnp.log(ev(self.ctx.spec["init"], env)), jnp.log(ev(self.ctx.spec["trans"], env))

    def init(self, key):
        return {}

    def _terms(self, y: jax.Array, env: dict) -> tuple[jax.Array, jax.Array, jax.Array]:
        log_init, log_trans = self._chain(env)
        emission = self.emission.as_written(env).log_prob(y[:, None])
        return log_init, log_trans, jnp.broadcast_to(emission, (y.shape[0], log_init.shape[0]))

    def log_prob(self, params, x, given):
        return jax.vmap(lambda y, env: forward(*self._terms(y, env)))(x, given)

    def hidden_states(self, y: jax.Array, env: dict) -> jax.Array:
        """``(T, K)``: the log posterior probability of each hidden state given one sequence ``y``
        ``(T,)`` and its parents' values ``env`` (one example)."""
        return smoothed(*self._terms(y, env))

    def sample(self, params, key, n, given):
        length = self.ctx.shape[0]

        def one(k, env):
            log_init, log_trans = self._chain(env)
            first, rest, emit = jax.random.split(k, 3)

            def step(state, kt):
                state = jax.random.categorical(kt, log_trans[state])
                return state, state

            s0 = jax.random.categorical(first, log_init)
            _, later = jax.lax.scan(step, s0, jax.random.split(rest, length - 1))
            states = jnp.concatenate([s0[None], later])
            draws = self.emission.as_written(env).expand((length, log_init.shape[0])).sample(emit)
            return draws[jnp.arange(length), states]

        return jax.vmap(one)(jax.random.split(key, n), given)

    def support(self, params, given_one):
        return self.emission.as_written(given_one).support
