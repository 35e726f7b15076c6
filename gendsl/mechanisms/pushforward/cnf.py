"""Continuous normalizing flows: the ``cnf`` map, solved with diffrax.

A network ``v(y, t, context)`` is a velocity field; ``y(0) = z`` from the base and ``x = y(1)``.
The density follows the instantaneous change of variables,
``d log p(y(t)) / dt = -tr(dv/dy)``, integrated jointly with the state from ``t = 1`` (the data)
back to ``t = 0``: ``log p(x) = log p_base(y(0)) - int_0^1 tr(dv/dy) dt``.

- ``trace="exact"``: the trace from the full Jacobian (``dim`` forward-mode passes); the
  likelihood kind is ``exact`` (up to the solver tolerance).
- ``trace="hutchinson"``: ``tr(J) ~ e^T J e`` with one Rademacher probe ``e`` per example held
  fixed along the solve (one forward-mode pass): an unbiased estimate of the log-density, kind
  ``estimate``. ``log_prob`` (which takes no key) uses a fixed probe key, so it is repeatable;
  the training loss draws fresh probes every step.

The solve is adaptive Tsit5 (``rtol``, ``atol``, ``max_steps``) unless ``steps=N`` asks for N
fixed steps; the whole batch is one ODE state, so one step size serves every example.

Training: ``train="likelihood"`` minimises the NLL through the solver (diffrax's
``RecursiveCheckpointAdjoint``: exact gradients of the discretised solve with checkpointed
memory; diffrax advises against the continuous "backsolve" adjoint, whose gradients are only
approximate); ``train="flow_matching"`` regresses ``v(y_t, t)`` on ``x - z`` along
``y_t = (1 - t) z + t x`` (rectified-flow interpolant), with no solve at all.

``cost()`` (network evaluations per sample): ``6 * steps`` for fixed steps (Tsit5 evaluates the
field six times a step); for adaptive solves, the count of the most recent sampling solve once
one has run (recorded from diffrax's statistics), the configured maximum ``6 * max_steps`` before.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp

from gendsl.core.signatures import STEP_LIMIT, Param, Signature
from gendsl.errors import GenSemanticError
from gendsl.mechanisms.base import build_network, check_vector_network, vector_network
from gendsl.mechanisms.pushforward.node import PushforwardNode, initialise, static_part
from gendsl.numerics.flow_matching import flow_matching_loss
from gendsl.numerics.ode import integrate_divergence, rademacher_probes, solve

__all__ = ["CNFPushforward", "velocity_network", "EVALS_PER_STEP", "LOG_PROB_PROBE_SEED"]

#: ``cnf(...)`` in the language
CNF_SIGNATURE = Signature("cnf", "map", (
        Param("net", "network", None), Param("trace", "str", "exact", ("exact", "hutchinson")),
        Param("train", "str", "likelihood", ("likelihood", "flow_matching")),
        Param("rtol", "number", 1e-3), Param("atol", "number", 1e-5), Param("steps", "int_or_str", "adaptive", limit=STEP_LIMIT),
        Param("max_steps", "int", 1000, limit=10**6, doc="most solver steps of one adaptive solve"),
    ), "continuous normalizing flow")

#: Tsit5 evaluates the vector field six times per step (first-same-as-last)
EVALS_PER_STEP = 6
#: key of the Hutchinson probes used by ``log_prob``
LOG_PROB_PROBE_SEED = 0


def velocity_network(in_size: int, out_size: int, spec, event_shape: tuple[int, ...], *, key: jax.Array):
    """The velocity network (a resolved vector network spec) of a variable of shape ``event_shape``,
    its output at zero (the flow starts as the identity)."""
    return build_network(spec, in_size, out_size, key=key, zero_last=True, event_shape=event_shape)


class CNFPushforward(PushforwardNode):
    """A pushforward through a continuous flow (``cnf(net=, trace=, train=, ...)``)."""

    def __init__(self, ctx):
        super().__init__(ctx)
        spec = self.map_spec
        self.trace, self.train = spec["trace"], spec["train"]
        self.steps = spec["steps"]
        if self.steps != "adaptive" and (not isinstance(self.steps, int) or self.steps < 1):
            raise GenSemanticError(f"cnf(steps=...) of '{ctx.name}' must be \"adaptive\" or a positive number of "
                                   f"steps, got {self.steps!r}", ctx.span)
        self.kind = self.map_kind(ctx.spec)
        self.loss_name = "nll (ode)" if self.train == "likelihood" else "flow matching"
        self.sampler_name = "ode (tsit5)" if self.steps == "adaptive" else f"ode (tsit5, {self.steps} steps)"
        self._recipe = (self.dim + 1 + self.cond_dim, self.dim, vector_network(self.map_spec["net"]), ctx.shape)
        self._static = static_part(velocity_network, self._recipe)

    def _solve_options(self) -> dict:
        spec = self.map_spec
        return dict(steps=self.steps, rtol=spec["rtol"], atol=spec["atol"], max_steps=spec["max_steps"],
                    label=f"the ODE solver of '{self.ctx.name}'")

    def init(self, key):
        return initialise(velocity_network, self._recipe, key)

    @staticmethod
    def _velocity(net, t, y, context):
        """One example: ``y`` ``(D,)``, scalar ``t``, ``context`` ``(C,)`` or None -> ``(D,)``."""
        parts = [y, jnp.reshape(t, (1,)).astype(y.dtype)]
        if context is not None:
            parts.append(context)
        return net(jnp.concatenate(parts))

    def _field(self, t, y, args):
        """Batched velocity: ``y`` ``(n, D)``."""
        params, context = args
        net = eqx.combine(params, self._static)
        return jax.vmap(self._velocity, (None, None, 0, 0))(net, t, y, context)

    # -- the density ---------------------------------------------------------------------------
    def log_det_inverse(self, params, y, context, key):
        """``z = T^{-1}(y)`` ``(n, D)`` and ``log|det dz/dy|`` ``(n,)`` by the backward solve.

        ``key`` draws the Hutchinson probes (unused with the exact trace).
        """
        probes = rademacher_probes(key, *y.shape, dtype=y.dtype) if self.trace == "hutchinson" else None
        field = jax.tree_util.Partial(self._velocity, eqx.combine(params, self._static))
        z, log_det, _ = integrate_divergence(field, y, 1.0, 0.0, context, probes, **self._solve_options())
        return z, log_det

    def _log_prob(self, params, x, given, key):
        y, log_det_link = self.from_data(x)
        z, log_det = self.log_det_inverse(params, y, self.context(given), key)
        return self.base_log_prob(z, given) + log_det + log_det_link

    def log_prob(self, params, x, given):
        return self._log_prob(params, x, given, jax.random.key(LOG_PROB_PROBE_SEED))

    # -- sampling ------------------------------------------------------------------------------
    def transform(self, params, z, context):
        """``y = T(z)``: ``(n, D)`` -> ``(n, D)`` and the number of solver steps."""
        return solve(self._field, z, 0.0, 1.0, (params, context), **self._solve_options())

    def sample_with_info(self, params, key, n, given):
        """Draws and ``{"nfe": evaluations of the solve}`` (adaptive solves: as diffrax counted)."""
        y, num_steps = self.transform(params, self.base_sample(key, n, given), self.context(given))
        return self.to_data(y)[0], {"nfe": EVALS_PER_STEP * num_steps}

    def sample(self, params, key, n, given):
        return self.sample_with_info(params, key, n, given)[0]

    def cost(self) -> int:
        """Evaluations per sample: fixed steps, or the most an adaptive solve may take."""
        return self.map_cost(self.ctx.spec, self.ctx.type)

    @classmethod
    def check_map(cls, name: str, map_spec, span, shape: tuple) -> None:
        """The velocity field is a vector network that reads the variable."""
        check_vector_network(map_spec["net"], f"the network of cnf() for '{name}'", span, option="net",
                             event_shape=shape)

    @classmethod
    def map_kind(cls, spec) -> str:
        """``exact`` with the exact Jacobian trace, ``estimate`` with Hutchinson's."""
        return "exact" if spec["map"]["trace"] == "exact" else "estimate"

    @classmethod
    def map_cost(cls, spec, vtype) -> int:
        """``EVALS_PER_STEP`` per solver step: fixed steps, or the adaptive solve's most."""
        m = spec["map"]
        return EVALS_PER_STEP * (m["steps"] if m["steps"] != "adaptive" else m["max_steps"])

    # -- training ------------------------------------------------------------------------------
    def flow_matching_loss(self, params, x, given, key):
        """Mean squared error of the velocity against ``x - z`` on the straight path from the base
        draw ``z`` to ``x`` (:func:`gendsl.numerics.flow_matching.flow_matching_loss`; scalar)."""
        t_key, z_key = jax.random.split(key)
        y, _ = self.from_data(x)
        n = y.shape[0]
        z = self.base_sample(z_key, n, given)
        t = jax.random.uniform(t_key, (n,), y.dtype)
        net = eqx.combine(params, self._static)
        context = self.context(given)
        return flow_matching_loss(lambda t, y_t: jax.vmap(self._velocity, (None, 0, 0, 0))(net, t, y_t, context),
                                  z, y, t)

    def loss(self, params, x, given, key):
        if self.train == "flow_matching":
            return self.flow_matching_loss(params, x, given, key)
        if self.base_name is not None:
            raise GenSemanticError(
                f"'{self.ctx.name} ~ pushforward({self.base_name}, cnf(...))' makes "
                f"{self.ctx.name} = T({self.base_name}) "
                f"exactly, so observed pairs have no density to fit T by maximum likelihood; use "
                f"cnf(..., train=\"flow_matching\") (paired flow matching) or a distribution base", self.ctx.span)
        return -jnp.mean(self._log_prob(params, x, given, key))
