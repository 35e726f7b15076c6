"""The registered ``energy`` mechanism: p(x) proportional to exp(-E(x)), times a base density.

``E`` is an expression of the language in the variable (and its parents), a Python function of
the variable (builder API), or a vector network (``mlp(...)``) fed the variable and the ``given=``
context. With ``base=`` the density is tilted: ``base(x) * exp(-E(x))`` for a distribution or a
mechanism (built as a nested node through the registry); ``base=NAME`` starts the chains at the
value of the variable ``NAME`` (whose density belongs to its own node).

Sampling (:mod:`.sampling`): the ``sampler=`` given, else a default that mixes: NUTS for an
expression, MALA for a conditional network energy, and for an unconditional one tempered SMC from
its base, annealed Langevin over its noise levels when trained by a multi-level ``dsm`` (the
default objective), else tempered SMC from a Gaussian fitted to its data (:mod:`.tempered`); ``tempering(...)`` runs parallel tempering.
A chain kernel runs in unconstrained coordinates, from noise (uniform in [-2, 2]) or from base
draws, one chain per draw or draws spread over long chains (``chains=C``).

A network energy without a base reads, trains and samples in the data's standardised
coordinates ``q = (u - loc) / scale`` (``u`` unconstrained; ``loc`` and ``scale`` the training
data's per-coordinate mean and sd, gathered in ``fit`` and kept as ``params["reference"]``), so
noise levels, chain starts and step sizes are in units of the data's own spread, whatever its
location and units. Networks train by ``dsm`` (default), ``ssm`` or ``cd`` (:mod:`.objectives`);
``dsm`` at ``levels=L > 1`` (the default, 8) makes the energy noise-conditional, ``E(x, sigma) =
net(q, log sigma) / sigma`` (log sigma one more input, the ``1 / sigma`` the scale of NCSN's
score), and the node's density is that at the smallest level; a base with parameters trains by its own objective beside them (a residual energy).
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
from gendsl.core.signatures import Param, Signature, Spec
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
from gendsl.mechanisms.energy import sampling, tempered, training
from gendsl.mechanisms.energy.objectives import noise_levels, training_objective
from gendsl.mechanisms.energy.sampling import AUTO_CHAINS

__all__ = ["CONFINE", "AUTO_CHAINS", "Energy"]

#: ``energy(...)`` in the language
ENERGY_SIGNATURE = Signature("energy", "mechanism", (
        Param("E", "expr|network"), Param("sampler", "kernel", None, sampling=True), Param("train", "objective", None),
        Param("base", "distribution|mechanism|name", None), Param("given", "names", ()),
        Param("ema", "number", 0.999, doc="decay of the moving average of a network energy's weights kept for "
                                          "sampling and scoring (0: the last weights)"),
    ), "p(x) proportional to exp(-E(x))")

#: scale of the Gaussian confinement of network energies without a base
CONFINE = 10.0


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
        """An energy expression is a scalar; an energy network is a vector network; ``dsm``'s levels are
        ordered; ``annealed`` needs an energy trained at several noise levels."""
        E = spec["E"]
        sampling.check_levels(name, spec, typing.call.span)
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
        #: a network energy without a base works in the data's standardised coordinates (see _to_u)
        self.standardised = self.network and self.base is None
        train = spec.get("train")
        if train is not None and not self.network:
            raise GenSemanticError(f"train={train.name}(...) needs a network energy; the energy of '{ctx.name}' is "
                                   f"an expression, with nothing to train", ctx.span)
        self.objective = training_objective(spec)
        self.ema = float(spec["ema"])
        if not 0.0 <= self.ema < 1.0:
            raise GenSemanticError(f"energy(ema=...) must be in [0, 1), got {spec['ema']}", ctx.span)
        self.loss_name = self.objective.name if self.objective is not None else "none"
        #: ``(L,)`` noise levels the energy is conditioned on, largest first (``L > 1``), else one or none
        self.sigmas = noise_levels(self.objective)
        self.multilevel = len(self.sigmas) > 1
        sampling.configure(self, spec)
        shape = ctx.shape
        self.constraint = {
            "real": constraints.independent(constraints.real, len(shape)) if shape else constraints.real,
            "positive": constraints.positive,
            "unit": constraints.unit_interval,
        }[ctx.type.base]
        self.transform = biject_to(self.constraint)
        self.u_shape = tuple(self.transform.inverse_shape(shape))
        self.dim = math.prod(self.u_shape)
        self.context = (context_size(ctx.parents, self.given_names) + self.multilevel) if self.network else 0
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
        if self.standardised:
            params["reference"] = tempered.fitted_reference(tempered.init_moments(self.dim))
        return params

    # -- densities -------------------------------------------------------------------------------
    def energy(self, params, x: jax.Array, given_one: dict, sigma: jax.Array | None = None) -> jax.Array:
        """E of ONE example ``x`` (the variable's shape) given its parents' values: scalar. A noise-conditional
        energy takes the level ``sigma`` (``()``; by default the smallest)."""
        if not self.network:
            return jnp.reshape(self.ctx.evaluate(self.E, {**given_one, self.ctx.name: x}), ())
        net = eqx.combine(params["energy"], self._static)
        features = self._features(params, x)
        context = context_vector(_one(given_one), self.ctx.parents, self.given_names)
        if context is not None:
            features = jnp.concatenate([features, context[0].astype(features.dtype)])
        if self.multilevel:
            sigma = jnp.asarray(self.sigmas[-1] if sigma is None else sigma, features.dtype)
            features = jnp.concatenate([features, jnp.log(sigma)[None]])
        e = net(features)[0]
        if self.multilevel:
            e = e / sigma
        if self.base is None:
            e = e + 0.5 * jnp.sum(features[: self.dim] ** 2) / CONFINE ** 2
        return e

    def _log_density(self, params, x: jax.Array, given_one: dict, sigma=None) -> jax.Array:
        """Unnormalised log-density of ONE example: ``-E(x)`` plus the base's log-density."""
        lp = -self.energy(params, x, given_one, sigma)
        if self.base is not None:
            lp = lp + self.base.log_prob(params.get("base", {}), x[None], _one(given_one))[0]
        return lp

    def _features(self, params, x: jax.Array) -> jax.Array:
        """``(dim,)`` what the network reads of ONE example: its standardised unconstrained coordinates
        (the example itself, flattened, for an energy that tilts a base)."""
        if not self.standardised:
            return jnp.reshape(x, (-1,)).astype(jnp.result_type(float))
        loc, scale = self._affine(params)
        return (self.transform.inv(x).reshape(-1) - loc) / scale

    def _affine(self, params) -> tuple[jax.Array, jax.Array]:
        """``(loc, scale)``, each ``(dim,)``: the data's per-coordinate mean and sd in ``u`` (the
        reference gathered in ``fit``, not a gradient-trained parameter); identity without one."""
        if not self.standardised:
            return jnp.zeros(self.dim), jnp.ones(self.dim)
        reference = jax.lax.stop_gradient(params["reference"])
        return reference["loc"], reference["scale"]

    def _to_u(self, params, q: jax.Array) -> jax.Array:
        """The sampling coordinates ``q`` ``(dim,)`` of ONE example -> its unconstrained ``u``
        (``u_shape``): ``u = loc + scale * q``. A standardised energy's samplers, noise levels and
        starts are thereby in units of the data's own spread."""
        loc, scale = self._affine(params)
        return (loc + scale * q).reshape(self.u_shape)

    def _log_density_u(self, params, q: jax.Array, given_one: dict, sigma=None) -> jax.Array:
        """The same in the sampling coordinates (flat ``q`` of shape ``(dim,)``), log-Jacobian of
        ``q -> x`` added (so log Z over ``q`` is that of the density of ``x``)."""
        u = self._to_u(params, q)
        x = self.transform(u)
        jacobian = jnp.sum(self.transform.log_abs_det_jacobian(u, x)) + jnp.sum(jnp.log(self._affine(params)[1]))
        return self._log_density(params, x, given_one, sigma) + jacobian

    def _energy_u(self, params, q: jax.Array, given_one: dict) -> jax.Array:
        return self.energy(params, self.transform(self._to_u(params, q)), given_one)

    def _raw_u(self, x: jax.Array) -> jax.Array:
        """``(n, *shape) -> (n, dim)`` unconstrained coordinates."""
        return jax.vmap(lambda xi: self.transform.inv(xi).reshape(-1))(x)

    def _unconstrain(self, params, x: jax.Array) -> jax.Array:
        """``(n, *shape) -> (n, dim)`` sampling coordinates ``q``."""
        loc, scale = self._affine(params)
        return (self._raw_u(x) - loc) / scale

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
        return sampling.start(self, params, key, n, given)

    def _sample_impl(self, params, key, given, n: int):
        u, info = sampling.draw(self, params, key, given, n)
        return jax.vmap(lambda q: self.transform(self._to_u(params, q)))(u), info

    def sample(self, params, key: jax.Array, n: int, given: dict | None = None) -> jax.Array:
        """``n`` draws, shape ``(n, *shape)``: each the last state of its own chain, spread over long chains,
        or resampled from SMC's final particles."""
        return self._sample(params, key, self._parents(given), n=n)[0]

    def sample_with_info(self, params, key: jax.Array, n: int, given: dict | None = None) -> tuple[jax.Array, dict]:
        """The draws and the sampler's info: for ``smc`` the run's ``log_z``, ``tempering_steps`` and
        ``acceptance_rate`` (scalars); for ``tempering`` its ``swap_rates`` ``(K - 1,)`` and each replica's
        ``acceptance_rate`` ``(K,)``; for ``annealed`` each level's ``acceptance_rate`` ``(L,)``."""
        return self._sample(params, key, self._parents(given), n=n)

    def log_normaliser(self, params, key: jax.Array, repeats: int = 8) -> tuple[float, float]:
        """log Z of ``exp(-E)`` (times the base) by ``repeats`` independent SMC runs: ``(mean, standard error)``."""
        if self.smc is None:
            raise GenSemanticError(f"log Z is estimated by sampler=smc(...); the energy of '{self.ctx.name}' is "
                                   f"sampled by {self.sampler_name}", self.ctx.span)
        log_z, se = jax.jit(tempered.log_normaliser, static_argnums=(0, 3))(self, params, key, repeats)
        return float(log_z), float(se)

    # -- training (gendsl.mechanisms.energy.training) ------------------------------------------------
    def loss(self, params, x: jax.Array, given: dict | None, key: jax.Array) -> jax.Array:
        """The training objective without persistent state (``cd`` negatives start afresh): scalar."""
        state_key, loss_key = jax.random.split(key)
        loss, _ = self.train_loss(params, self.init_train_state(state_key, params, persistent=False), x, given, loss_key)
        return loss

    def init_train_state(self, key: jax.Array, params, persistent: bool = True) -> dict:
        """See :func:`~gendsl.mechanisms.energy.training.init_state`."""
        return training.init_state(self, key, params, persistent)

    def train_loss(self, params, state, x, given, key, group: str = "main"):
        """See :func:`~gendsl.mechanisms.energy.training.step_loss`."""
        return training.step_loss(self, params, state, x, self._parents(given), key, group)

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
        """See :func:`~gendsl.mechanisms.energy.training.kept_params`."""
        return training.kept_params(self, params, state)

    # -- the plan --------------------------------------------------------------------------------
    def cost(self) -> int:
        """Energy (gradient) evaluations of one chain, plus the base's draw that starts it."""
        parents = any(p != self.base_name for p in self.ctx.parents)
        return sampling.chain_cost(self.ctx.spec, parents) + (self.base.cost() if self.base is not None else 0)

    @classmethod
    def static_cost(cls, spec: Spec, vtype, mechanisms) -> int:
        base = spec.get("base")
        extra = 0
        if isinstance(base, Spec):
            extra = mechanisms["leaf" if base.category == "distribution" else base.name].static_cost(base, vtype, mechanisms)
        return sampling.chain_cost(spec) + extra

    @classmethod
    def choices(cls, vtype):
        """Network energies that mix between modes: trained at several noise levels and sampled by annealed
        Langevin over them (the default then), sampled by parallel tempering (both draw a whole sample from
        one population: unconditional only), and one tilting a coupling flow."""
        if vtype.base not in ("real", "positive", "unit"):
            return []
        return [
            cls.choice("energy(mlp(hidden=[128, 128]), train=dsm(sigma=0.1, sigma_max=1, levels=10))",
                       "energy-based model at 10 noise levels: by default annealed Langevin over them, which crosses "
                       "between modes where one chain from noise stays in one", conditional=False),
            cls.choice("energy(mlp(hidden=[128, 128]), train=dsm(sigma=0.1), sampler=tempering(chains=4, steps=500))",
                       "energy-based model sampled by parallel tempering: replicas over a temperature ladder swap "
                       "states (swap rates reported)", conditional=False),
            cls.choice("energy(mlp(hidden=[64, 64]), base=pushforward(normal(0, 1), coupling(layers=4, "
                       "hidden=[64, 64])), train=cd(steps=20), sampler=mala(step_size=0.02, steps=50))",
                       "an energy tilting a flow: chains start at the flow's draws"),
        ]
