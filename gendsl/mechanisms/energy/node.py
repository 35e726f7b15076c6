"""The registered ``energy`` mechanism: p(x) proportional to exp(-E(x)), times a base density.

``E`` is an expression of the language in the variable (and its parents), a Python function of
the variable (builder API), or a vector network (``mlp(...)``) fed the variable and the ``given=``
context. With ``base=`` the density is tilted: ``base(x) * exp(-E(x))`` for a distribution or a
mechanism (built as a nested node through the registry); ``base=NAME`` starts the chains at the
value of the variable ``NAME`` (whose density belongs to its own node).

``sampler=smc(...)`` moves a population from a reference (the base, else a Gaussian) to the
density by blackjax's adaptive tempered SMC and estimates log Z (:mod:`.tempered`). Otherwise
sampling runs the node's blackjax kernel (``sampler=``, NUTS by default for expressions, MALA for
networks) in unconstrained coordinates, from noise (uniform in [-2, 2]) or from base draws, in
one of two ways. *One chain per draw*: warm-up, ``steps`` transitions, the last state is the draw
(short-run sampling, as energy-based models are trained; always so when the energy depends on
other variables). *Long chains* (``chains=C``; by default ``min(n, AUTO_CHAINS)`` for NUTS and
HMC on an unconditional energy): ``C`` chains warm up once, then each runs
``max(steps, n / C)`` transitions and its draws are spread evenly over them.

Networks train by ``dsm`` (default), ``ssm`` or ``cd`` (:mod:`.objectives`), in unconstrained
coordinates; a base with parameters trains by its own objective beside them (a residual energy).
Network energies without a base get a weak Gaussian confinement ``|x|^2 / (2 * CONFINE^2)``,
so ``exp(-E)`` stays normalisable wherever the network extrapolates.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpyro.distributions.constraints as constraints
from numpyro.distributions.transforms import biject_to

from gendsl.core.ast import Opaque
from gendsl.core.signatures import Param, Signature, Spec, default_spec
from gendsl.core.types import shape_str
from gendsl.errors import GenSemanticError
from gendsl.mechanisms.base import (
    AbstractMechanism,
    NodeContext,
    build_network,
    check_vector_network,
    context_size,
    context_vector,
    split_module,
)
from gendsl.mechanisms.energy import tempered
from gendsl.mechanisms.energy.objectives import DSM_SIGNATURE, cd_loss, dsm_loss, ssm_loss
from gendsl.numerics import kernels, mcmc, smc

__all__ = ["CONFINE", "AUTO_CHAINS", "Energy"]

#: ``energy(...)`` in the language
ENERGY_SIGNATURE = Signature("energy", "mechanism", (
        Param("E", "expr|network"), Param("sampler", "kernel", None, sampling=True), Param("train", "objective", None),
        Param("base", "distribution|mechanism|name", None), Param("given", "names", ()),
    ), "p(x) proportional to exp(-E(x))")

#: scale of the Gaussian confinement of network energies without a base
CONFINE = 10.0
#: long chains used by default by NUTS and HMC on an unconditional energy
AUTO_CHAINS = 16


def _one(tree):
    return jax.tree_util.tree_map(lambda v: v[None], tree)


def _nested(ctx: NodeContext, spec: Spec) -> AbstractMechanism:
    """The base as a node of its own (same variable and parents), through the registry."""
    name = "leaf" if spec.category == "distribution" else spec.name
    given = tuple(spec.get("given", ()) or ()) if spec.category == "mechanism" else ()
    return ctx.mechanisms[name].build(dataclasses.replace(ctx, spec=spec, given=given))


class Energy(AbstractMechanism):
    """``x ~ energy(E, sampler=KERNEL, train=OBJECTIVE, base=BASE, given=...)``; likelihood kind
    ``unnormalized``."""

    name = "energy"
    signature = ENERGY_SIGNATURE
    bases = ("real", "positive", "unit")
    kind = "unnormalized"
    #: ``log_normaliser(params, key, repeats)``: log Z and its standard error, when sampled by ``smc``
    capabilities = frozenset({"log_normaliser"})

    @classmethod
    def self_reference(cls, spec, name) -> bool:
        """``E`` reads the variable itself (unless it is conditioned on it)."""
        return name not in (spec.get("given", ()) or ())

    @classmethod
    def check_spec(cls, name, spec, vtype, typing) -> None:
        """An energy expression is a scalar; an energy network is a vector network."""
        E = spec["E"]
        if isinstance(E, Spec):
            check_vector_network(E, f"the energy network of '{name}'", typing.call.span, event_shape=vtype.shape)
            return
        if isinstance(E, Opaque):
            return
        shape = typing.shape_of(E, {name: vtype})
        if shape not in ((), (1,)):
            raise GenSemanticError(f"the energy of '{name}' must be a scalar, got shape {shape_str(shape)}", E.span)

    def __init__(self, ctx: NodeContext):
        super().__init__(ctx)
        spec = ctx.spec
        self.E = spec["E"]
        self.network = isinstance(self.E, Spec)
        self.given_names = tuple(spec.get("given") or ())
        missing = [n for n in self.given_names if n not in ctx.parents]
        if missing:
            raise GenSemanticError(f"given={missing[0]} is not a parent of '{ctx.name}'", ctx.span)
        self._set_base(spec.get("base"))
        self._set_sampler(self._sampler_spec(spec))
        train = spec.get("train")
        if train is not None and not self.network:
            raise GenSemanticError(f"train={train.name}(...) needs a network energy; the energy of '{ctx.name}' is "
                                   f"an expression, with nothing to train", ctx.span)
        self.objective = train or (default_spec(DSM_SIGNATURE) if self.network else None)
        self.loss_name = self.objective.name if self.objective is not None else "none"
        shape = ctx.shape
        self.constraint = {
            "real": constraints.independent(constraints.real, len(shape)) if shape else constraints.real,
            "positive": constraints.positive,
            "unit": constraints.unit_interval,
        }[ctx.type.base]
        self.transform = biject_to(self.constraint)
        self.u_shape = tuple(self.transform.inverse_shape(shape))
        self.dim = math.prod(self.u_shape)
        self.context = context_size(ctx.parents, self.given_names) if self.network else 0
        self.has_params = self.network or self.base_trains
        self._sample = jax.jit(self._sample_impl, static_argnames=("n",))
        # one compiled program rather than an eager dispatch per layer
        self._init_network = jax.jit(lambda key: split_module(self._build(key))[0])

    def _set_base(self, base) -> None:
        """``base=``: a variable's name (chains start at its value) or a nested node (a density)."""
        self.base_name = base if isinstance(base, str) else None
        self.base = _nested(self.ctx, base) if isinstance(base, Spec) else None
        if self.base is not None and self.base.kind == "unavailable":
            raise GenSemanticError(f"the base of the energy of '{self.ctx.name}' has no density ({base.name}); "
                                   f"tilt a base with a likelihood", self.ctx.span)
        self.base_trains = self.base is not None and self.base.has_params
        if self.base is not None:
            self.groups = ("main", *(g for g in self.base.groups if g != "main"))

    def _set_sampler(self, sampler: Spec) -> None:
        """The kernel, its warm-up and steps, and how draws are spread over chains (or SMC's settings)."""
        self.smc = smc.config_from_spec(sampler) if sampler.name == "smc" else None
        if self.smc is not None:
            self._set_smc()
            return
        self.config = kernels.config_from_spec(sampler)
        self.num_warmup, self.num_steps, chains = sampler["warmup"], sampler["steps"], sampler["chains"]
        conditioned = [p for p in self.ctx.parents if p != self.base_name]
        if chains and conditioned:
            raise GenSemanticError(
                f"{sampler.name}(chains={chains}) draws from a few long chains, but the energy of '{self.ctx.name}' "
                f"depends on {', '.join(conditioned)}: each draw needs its own chain (leave chains at 0)", self.ctx.span)
        if not chains and not conditioned and self.config.adapts_mass:
            chains = AUTO_CHAINS
        #: long chains the draws are spread over (0: one chain per draw)
        self.chains = chains
        if not chains and self.config.mass == "auto" and math.prod(self.ctx.shape) > kernels.DENSE_MAX_DIM:
            # one chain per draw: a low-rank estimate's buffer of each chain's draws and gradients
            # would grow with the number of draws; the diagonal one's memory does not
            self.config = dataclasses.replace(self.config, mass="diagonal")
        self.sampler_name = f"{self.config.describe()} x {self.num_warmup}+{self.num_steps}"
        if self.base is not None or self.base_name:
            self.sampler_name += f" from {'base' if self.base is not None else self.base_name}"

    def _set_smc(self) -> None:
        """``smc(...)``: one population for the whole sample, from the base or a Gaussian; ``cd``
        negatives (when trained so) come from MALA's defaults."""
        if self.ctx.parents:
            raise GenSemanticError(
                f"smc(...) draws the whole sample from one population, but the energy of '{self.ctx.name}' depends "
                f"on {', '.join(self.ctx.parents)}; use a kernel such as mala() (one chain per draw)", self.ctx.span)
        self.config = kernels.config_from_spec(default_spec(kernels.MALA_SIGNATURE))
        self.chains = 0
        self.sampler_name = f"{self.smc.describe()} from {'base' if self.base is not None else 'a Gaussian'}"

    # -- parameters ------------------------------------------------------------------------------
    def _build(self, key: jax.Array):
        return build_network(self.E, self.dim + self.context, 1, key=key, zero_last=True, event_shape=self.ctx.shape)

    @functools.cached_property
    def _static(self):
        shapes = eqx.filter_eval_shape(self._build, jax.random.key(0))
        return eqx.partition(shapes, lambda leaf: isinstance(leaf, jax.ShapeDtypeStruct))[1]

    def init(self, key: jax.Array) -> dict:
        """``{"energy": network params}`` for a network, ``{"base": ...}`` for a trained base."""
        k_net, k_base = jax.random.split(key)
        params = {}
        if self.network:
            params["energy"] = self._init_network(k_net)
        if self.base_trains:
            params["base"] = self.base.init(k_base)
        if self.smc is not None and self.network and self.base is None:
            params["reference"] = tempered.fitted_reference(tempered.init_moments(self.dim))
        return params

    # -- densities -------------------------------------------------------------------------------
    def energy(self, params, x: jax.Array, given_one: dict) -> jax.Array:
        """E of ONE example ``x`` (the variable's shape) given its parents' values: scalar."""
        if not self.network:
            return jnp.reshape(self.ctx.evaluate(self.E, {**given_one, self.ctx.name: x}), ())
        net = eqx.combine(params["energy"], self._static)
        features = jnp.reshape(x, (-1,)).astype(jnp.result_type(float))
        context = context_vector(_one(given_one), self.ctx.parents, self.given_names)
        if context is not None:
            features = jnp.concatenate([features, context[0].astype(features.dtype)])
        e = net(features)[0]
        if self.base is None:
            e = e + 0.5 * jnp.sum(features[: self.dim] ** 2) / CONFINE ** 2
        return e

    def _log_density(self, params, x: jax.Array, given_one: dict) -> jax.Array:
        """Unnormalised log-density of ONE example: ``-E(x)`` plus the base's log-density."""
        lp = -self.energy(params, x, given_one)
        if self.base is not None:
            lp = lp + self.base.log_prob(params.get("base", {}), x[None], _one(given_one))[0]
        return lp

    def _log_density_u(self, params, u: jax.Array, given_one: dict) -> jax.Array:
        """The same in unconstrained coordinates (flat ``u`` of shape ``(dim,)``), log-Jacobian added."""
        u = u.reshape(self.u_shape)
        x = self.transform(u)
        return self._log_density(params, x, given_one) + jnp.sum(self.transform.log_abs_det_jacobian(u, x))

    def _energy_u(self, params, u: jax.Array, given_one: dict) -> jax.Array:
        return self.energy(params, self.transform(u.reshape(self.u_shape)), given_one)

    def _unconstrain(self, x: jax.Array) -> jax.Array:
        """``(n, *shape) -> (n, dim)``."""
        return jax.vmap(lambda xi: self.transform.inv(xi).reshape(-1))(x)

    def _parents(self, given: dict | None) -> dict:
        given = given or {}
        return {p: given[p] for p in self.ctx.parents}

    def log_prob(self, params, x: jax.Array, given: dict | None = None) -> jax.Array:
        """Unnormalised log-density ``-E(x)`` (+ base), ``-inf`` outside the support: ``(n, *shape) -> (n,)``."""
        def one(xi, gi):
            inside = jnp.all(self.constraint(xi))
            return jnp.where(inside, self._log_density(params, xi, gi), -jnp.inf)

        return jax.vmap(one)(x, self._parents(given))

    def support(self, params, given_one: dict):
        return self.constraint

    # -- sampling --------------------------------------------------------------------------------
    def _start(self, params, key: jax.Array, n: int, given: dict) -> jax.Array:
        """``(n, dim)`` unconstrained starting points: base draws, the base variable, or noise."""
        if self.base is not None:
            return self._unconstrain(self.base.sample(params.get("base", {}), key, n, given))
        if self.base_name is not None:
            return self._unconstrain(given[self.base_name])
        return mcmc.uniform_starts(key, (n, self.dim))

    def _sample_impl(self, params, key, given, n: int):
        start_key, run_key = jax.random.split(key)
        info = {}
        if self.smc is not None:
            u, info = tempered.sample(self, params, key, n)
        elif self.chains:
            chains = min(n, self.chains)
            per_chain = -(-n // chains)
            thin = max(1, self.num_steps // per_chain)
            u0 = self._start(params, start_key, chains, jax.tree_util.tree_map(lambda v: v[:chains], given))
            draws, _, _ = mcmc.run_chains(self.config, lambda u: self._log_density_u(params, u, {}), run_key, u0,
                                          self.num_warmup, per_chain, thin)
            u = draws.reshape(-1, self.dim)[:n]
        else:
            u0 = self._start(params, start_key, n, given)

            def one(k, u_start, g):
                return mcmc.final_positions(self.config, lambda u: self._log_density_u(params, u, g), k,
                                            u_start[None], self.num_warmup, self.num_steps)[0]

            u = jax.vmap(one)(jax.random.split(run_key, n), u0, given)
        return jax.vmap(lambda q: self.transform(q.reshape(self.u_shape)))(u), info

    def sample(self, params, key: jax.Array, n: int, given: dict | None = None) -> jax.Array:
        """``n`` draws, shape ``(n, *shape)``: each the last state of its own chain, spread over long chains,
        or resampled from SMC's final particles."""
        return self._sample(params, key, self._parents(given), n=n)[0]

    def sample_with_info(self, params, key: jax.Array, n: int, given: dict | None = None) -> tuple[jax.Array, dict]:
        """The draws and, for ``smc``, the run's ``log_z``, ``tempering_steps`` and ``acceptance_rate`` (scalars)."""
        return self._sample(params, key, self._parents(given), n=n)

    def log_normaliser(self, params, key: jax.Array, repeats: int = 8) -> tuple[float, float]:
        """log Z of ``exp(-E)`` (times the base) by ``repeats`` independent SMC runs: ``(mean, standard error)``."""
        if self.smc is None:
            raise GenSemanticError(f"log Z is estimated by sampler=smc(...); the energy of '{self.ctx.name}' is "
                                   f"sampled by {self.config.name}", self.ctx.span)
        log_z, se = jax.jit(tempered.log_normaliser, static_argnums=(0, 3))(self, params, key, repeats)
        return float(log_z), float(se)

    # -- training --------------------------------------------------------------------------------
    def _frozen_base(self, params) -> dict:
        """Parameters with the base's gradient stopped (the base trains by its own objective)."""
        if "base" not in params:
            return params
        return {**params, "base": jax.lax.stop_gradient(params["base"])}

    def _negatives(self, params, u0: jax.Array, given: dict, key: jax.Array, num_steps: int) -> jax.Array:
        """``num_steps`` kernel transitions from each row of ``u0`` under the (frozen) model."""
        frozen = jax.lax.stop_gradient(params)

        def one(k, u_start, g):
            return mcmc.short_run(self.config, lambda u: self._log_density_u(frozen, u, g), k, u_start[None],
                                  num_steps)[0]

        return jax.lax.stop_gradient(jax.vmap(one)(jax.random.split(key, u0.shape[0]), u0, given))

    def _objective(self, params, u: jax.Array, given: dict, key: jax.Array, buffer: jax.Array | None):
        """The energy's own loss and the new replay buffer (or ``None``)."""
        obj = self.objective
        if obj.name in ("dsm", "ssm"):
            frozen = self._frozen_base(params)
            logp = lambda q, g: self._log_density_u(frozen, q, g)  # noqa: E731
            if obj.name == "dsm":
                return dsm_loss(logp, u, given, key, obj["sigma"]), buffer
            return ssm_loss(logp, u, given, key, obj["projections"]), buffer
        k_pick, k_fresh, k_coin, k_run = jax.random.split(key, 4)
        n = u.shape[0]
        u0 = self._start(jax.lax.stop_gradient(params), k_fresh, n, given)
        if buffer is not None:
            idx = jax.random.randint(k_pick, (n,), 0, buffer.shape[0])
            reinit = jax.random.uniform(k_coin, (n,)) < obj["reinit"]
            u0 = jnp.where(reinit[:, None], u0, buffer[idx])
        negatives = self._negatives(params, u0, given, k_run, obj["steps"])
        if buffer is not None:
            buffer = buffer.at[idx].set(negatives.astype(buffer.dtype))
        loss = cd_loss(lambda q, g: self._energy_u(params, q, g), u, negatives, given, obj["alpha"])
        return loss, buffer

    def loss(self, params, x: jax.Array, given: dict | None, key: jax.Array) -> jax.Array:
        """The training objective without persistent state (``cd`` negatives start afresh): scalar."""
        state_key, loss_key = jax.random.split(key)
        loss, _ = self.train_loss(params, self.init_train_state(state_key, params, persistent=False), x, given, loss_key)
        return loss

    def init_train_state(self, key: jax.Array, params, persistent: bool = True) -> dict:
        """``{"base": the base's state}`` and, for ``cd``, ``{"buffer": (size, dim) replay buffer}``."""
        k_base, k_buffer = jax.random.split(key)
        state = {}
        if self.base_trains:
            state["base"] = self.base.init_train_state(k_base, params["base"])
        if "reference" in params:
            state["moments"] = tempered.init_moments(self.dim)
        if persistent and self.objective is not None and self.objective.name == "cd":
            state["buffer"] = mcmc.uniform_starts(k_buffer, (self.objective["buffer"], self.dim))
        return state

    def train_loss(self, params, state, x, given, key, group: str = "main"):
        """The base's objective (its own groups too) plus, for ``main``, the energy's objective."""
        given = self._parents(given)
        k_base, k_obj = jax.random.split(key)
        state = dict(state)
        total = jnp.zeros(())
        if self.base_trains:
            base_loss, state["base"] = self.base.train_loss(params["base"], state["base"], x, given, k_base, group)
            total = total + base_loss
        if group != "main" or self.objective is None:
            return total, state
        u = self._unconstrain(x)
        if "moments" in state:
            state["moments"] = tempered.update_moments(state["moments"], u)
        loss, buffer = self._objective(params, u, given, k_obj, state.get("buffer"))
        if buffer is not None:
            state["buffer"] = buffer
        return total + loss, state

    def param_labels(self, params):
        labels = {}
        if "energy" in params:
            labels["energy"] = jax.tree_util.tree_map(lambda _: "main", params["energy"])
        if "reference" in params:
            labels["reference"] = jax.tree_util.tree_map(lambda _: "main", params["reference"])
        if "base" in params:
            labels["base"] = self.base.param_labels(params["base"])
        return labels

    def finalize(self, params, state):
        if "moments" in state:
            params = {**params, "reference": tempered.fitted_reference(state["moments"])}
        if "base" in params:
            return {**params, "base": self.base.finalize(params["base"], state.get("base", ()))}
        return params

    # -- the plan --------------------------------------------------------------------------------
    def cost(self) -> int:
        """Energy (gradient) evaluations of one chain, plus the base's draw that starts it."""
        return self._chain_cost(self.ctx.spec) + (self.base.cost() if self.base is not None else 0)

    @staticmethod
    def _sampler_spec(spec: Spec) -> Spec:
        """The kernel given by ``sampler=``, else MALA for a network energy and NUTS for an expression."""
        return spec.get("sampler") or default_spec(kernels.MALA_SIGNATURE if isinstance(spec["E"], Spec) else kernels.NUTS_SIGNATURE)

    @classmethod
    def _chain_cost(cls, spec: Spec) -> int:
        """Transitions (warm-up and kept) times gradient evaluations per transition; for ``smc``, energy
        evaluations per particle of a typical run."""
        sampler = cls._sampler_spec(spec)
        if sampler.name == "smc":
            return smc.config_from_spec(sampler).evaluations()
        return (sampler["warmup"] + sampler["steps"]) * kernels.config_from_spec(sampler).gradient_steps()

    @classmethod
    def static_cost(cls, spec: Spec, vtype, mechanisms) -> int:
        base = spec.get("base")
        extra = 0
        if isinstance(base, Spec):
            extra = mechanisms["leaf" if base.category == "distribution" else base.name].static_cost(base, vtype, mechanisms)
        return cls._chain_cost(spec) + extra

    @classmethod
    def choices(cls, vtype):
        """A network energy sampled by MALA, and one tilting a coupling flow (continuous variables)."""
        if vtype.base not in ("real", "positive", "unit"):
            return []
        return [
            cls.choice("energy(mlp(hidden=[128, 128]), train=dsm(sigma=0.1), sampler=mala(step_size=0.01, steps=200))", "energy-based model: density known up to a constant, MCMC sampling"),
            cls.choice("energy(mlp(hidden=[64, 64]), base=pushforward(normal(0, 1), coupling(layers=4, "
                       "hidden=[64, 64])), train=cd(steps=20), sampler=mala(step_size=0.02, steps=50))",
                       "an energy tilting a flow: chains start at the flow's draws"),
        ]
