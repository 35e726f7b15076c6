"""``evolve``: a learned time evolution from noise to data (diffusion, score SDEs, flow matching).

``x ~ evolve(PROCESS, net=NETWORK, sampler=ode(...) | sde(...) | edm_heun(...) | dpm_solver(...), given=...,
guidance=w)``:

- training: denoising score matching (vp, subvp, ve; standard or likelihood weighting) or
  velocity regression (flow_matching), with low-variance time sampling
  (:mod:`~gendsl.mechanisms.evolve.losses`); the training state keeps an exponential moving
  average of the network and the data's running mean and variance (the standardisation), and
  :meth:`Evolve.finalize` hands back the average;
- sampling: the probability-flow ODE or the reverse SDE through diffrax
  (:mod:`~gendsl.mechanisms.evolve.samplers`), with classifier-free guidance when ``given=`` is
  set and ``guidance`` is not 0 (the context is dropped at random during training);
- likelihood: the probability-flow ODE (:mod:`~gendsl.mechanisms.evolve.likelihood`), kind
  ``estimate``: exact trace for small variables, Hutchinson's estimator otherwise.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from gendsl.core.signatures import Param, Signature, Spec, default_spec
from gendsl.errors import GenSemanticError
from gendsl.mechanisms.base import check_vector_network
from gendsl.mechanisms.evolve import likelihood
from gendsl.mechanisms.evolve.losses import denoising_loss, velocity_loss
from gendsl.mechanisms.evolve.node import EvolveNode
from gendsl.mechanisms.evolve.processes import FlowMatching
from gendsl.mechanisms.evolve.samplers import (
    ODE_SIGNATURE,
    SCALED_SAMPLERS,
    ode_path,
    sampler_evaluations,
    solve_ode,
    solve_sde,
)
from gendsl.mechanisms.evolve.scaled_samplers import solve_dpm, solve_edm
from gendsl.numerics.ema import ema_init, ema_update
from gendsl.numerics.standardise import (
    affine_of,
    init_moments,
    log_jacobian,
    standardise,
    unstandardise,
    update_moments,
)

__all__ = ["EXACT_TRACE_MAX_SIZE", "Evolve"]

#: with ``trace="auto"``, the exact Jacobian trace is used up to this many elements
EXACT_TRACE_MAX_SIZE = 16
#: the probes of Hutchinson's estimator are fixed, so that log_prob is a deterministic function
_PROBE_KEY = 0


#: ``evolve(...)`` in the language
EVOLVE_SIGNATURE = Signature("evolve", "mechanism", (
        Param("process", "process"), Param("net", "network", None), Param("sampler", "sampler", None, sampling=True),
        Param("given", "names", ()), Param("guidance", "number", 0.0, sampling=True), Param("ema", "number", 0.999),
        Param("weighting", "str", "standard", ("standard", "likelihood")),
        Param("trace", "str", "auto", ("auto", "exact", "hutchinson")),
        Param("dropout", "number", 0.1, doc="probability of dropping the given= context in training (guidance)"),
        Param("time_sampling", "str", "stratified", ("stratified", "antithetic", "uniform")),
    ), "diffusion / flow matching")


class Evolve(EvolveNode):
    """``x ~ evolve(process, net=, sampler=, given=, guidance=, ema=, weighting=, trace=, ...)``."""

    name = "evolve"
    signature = EVOLVE_SIGNATURE
    bases = ("real",)
    kind = "estimate"
    capabilities = frozenset({"distillable"})

    @classmethod
    def check_spec(cls, name, spec, vtype, typing) -> None:
        """The network is a vector network; sampler steps, weighting, ``ema`` and ``dropout`` in range."""
        where = typing.call.span
        check_vector_network(spec["net"], f"the network of evolve() for '{name}'", where, option="net",
                             event_shape=vtype.shape)
        sampler = cls._sampler_spec(spec)
        steps = sampler["steps"]
        if steps != "adaptive" and (not isinstance(steps, int) or steps < 1):
            allowed = 'a positive integer or "adaptive"' if sampler.name == "ode" else "a positive integer"
            raise GenSemanticError(f"{sampler.name}(steps=...) must be {allowed}, got {steps!r}", where)
        if sampler.name in SCALED_SAMPLERS and spec["process"].name == "flow_matching":
            raise GenSemanticError(f"{sampler.name}() runs with sigma/alpha as its time, which is infinite at the "
                                   f"noise end of flow_matching(); sample it with ode(solver=\"heun\") or train "
                                   f"with vp(), ve() or edm()", where)
        if sampler.name == "edm_heun" and float(sampler["churn"]) < 0:
            raise GenSemanticError(f"edm_heun(churn=...) must be >= 0, got {sampler['churn']}", where)
        if spec["process"].name == "flow_matching" and spec["weighting"] == "likelihood":
            raise GenSemanticError("weighting=\"likelihood\" applies to vp(), subvp(), ve() and edm(); flow_matching() is "
                                   "trained by velocity regression: drop the weighting", where)
        for option in ("ema", "dropout"):
            if not 0.0 <= float(spec[option]) < 1.0:
                raise GenSemanticError(f"evolve({option}=...) must be in [0, 1), got {spec[option]}", where)

    def __init__(self, ctx):
        super().__init__(ctx)
        spec = ctx.spec
        self.sampler = self._sampler_spec(spec)
        self.flow = isinstance(self.process, FlowMatching)
        self.weighting = spec["weighting"]
        self.ema, self.dropout = float(spec["ema"]), float(spec["dropout"])
        self.time_sampling = spec["time_sampling"]
        trace = spec["trace"]
        self.trace = ("exact" if ctx.size <= EXACT_TRACE_MAX_SIZE else "hutchinson") if trace == "auto" else trace
        self.loss_name = ("velocity regression" + (", minibatch OT" if self.process.ot else "") if self.flow
                          else f"dsm, {self.weighting} weighting")
        self.sampler_name = self._sampler_words()

    def _sampler_words(self) -> str:
        s = self.sampler
        if s.name == "ode":
            words = (f"ode tsit5 adaptive (rtol={s['rtol']:g}, atol={s['atol']:g})" if s["steps"] == "adaptive"
                     else f"ode {s['solver']}, {s['steps']} steps")
        elif s.name == "edm_heun":
            words = f"edm heun, {s['steps']} noise levels" + (f", churn {s['churn']:g}" if s["churn"] else "")
        elif s.name == "dpm_solver":
            words = f"dpm-solver++(2m), {s['steps']} steps"
        else:
            words = f"sde euler-maruyama, {s['steps']} steps" + (
                f", {s['corrector']} langevin corrector(s)" if s["corrector"] else "")
        return words + (f", guidance {self.guidance:g}" if self.guidance else "")

    # -- training -------------------------------------------------------------------------------
    def _objective(self, net_params, y, given, key, train: bool = True):
        """The loss on standardised data ``y`` (context dropped at random for guidance; the
        network in training mode when ``train``)."""
        k_drop, k_loss = jax.random.split(key)
        keep = None
        if self.ctx.given and self.dropout > 0:
            keep = jax.random.bernoulli(k_drop, 1.0 - self.dropout, (y.shape[0],))
        context = self.context(given, keep)
        model = self.model(net_params, key=jax.random.fold_in(key, 1) if train else None)
        if self.flow:
            return velocity_loss(model, self.process, y, context, k_loss, time_sampling=self.time_sampling,
                                 ot=self.process.ot)
        return denoising_loss(model, self.process, y, context, k_loss, weighting=self.weighting,
                              time_sampling=self.time_sampling)

    def loss(self, params, x, given, key):
        """The objective of trained ``params`` (the network in inference mode: held-out losses)."""
        return self._objective(params["net"], standardise(params, x), given, key, train=False)

    def init_train_state(self, key, params):
        affine = {k: v for k, v in params.items() if k != "net"}
        return {"ema": ema_init(params["net"]), "step": jnp.zeros((), jnp.int32),
                "moments": init_moments(self.ctx.shape), "affine": affine}

    def train_loss(self, params, state, x, given, key, group="main"):
        """The objective under the running standardisation; updates the moments and the EMA."""
        if group != "main":
            return jnp.zeros(()), state
        moments = update_moments(state["moments"], x)
        affine = affine_of(moments)
        loss = self._objective(params["net"], standardise(affine, x), given, key)
        ema = ema_update(state["ema"], params["net"], state["step"], self.ema)
        return loss, {"ema": ema, "step": state["step"] + 1, "moments": moments, "affine": affine}

    def finalize(self, params, state):
        """The EMA network (or the raw one when ``ema=0``) with the data's standardisation."""
        return {"net": state["ema"] if self.ema > 0 else params["net"], **state["affine"]}

    # -- sampling and density -------------------------------------------------------------------
    def sample_with_info(self, params, key, n, given):
        """Draws and ``{"nfe": network evaluations per sample}`` (from diffrax's step count)."""
        k_prior, k_noise = jax.random.split(key)
        y1 = self.prior_draws(k_prior, n)
        model = self.model(params["net"], guided=True)
        context = self.context(given)
        s = self.sampler
        if s.name == "ode":
            y, nfe = solve_ode(model, self.process, y1, context, steps=s["steps"], solver=s["solver"],
                               rtol=s["rtol"], atol=s["atol"], label=f"the ODE sampler of '{self.ctx.name}'")
        elif s.name == "edm_heun":
            y, nfe = solve_edm(model, self.process, y1, k_noise, context, steps=s["steps"], churn=float(s["churn"]),
                               s_tmin=float(s["s_tmin"]), s_tmax=float(s["s_tmax"]), s_noise=float(s["s_noise"]))
        elif s.name == "dpm_solver":
            y, nfe = solve_dpm(model, self.process, y1, context, steps=s["steps"])
        else:
            y, nfe = solve_sde(model, self.process, y1, k_noise, context, steps=s["steps"],
                               corrector=s["corrector"], snr=s["snr"])
        return unstandardise(params, y), {"nfe": nfe * (2 if self.guidance else 1)}

    def sample(self, params, key, n, given):
        return self.sample_with_info(params, key, n, given)[0]

    def log_prob(self, params, x, given):
        key = jax.random.key(_PROBE_KEY) if self.trace == "hutchinson" else None
        lp = likelihood.log_prob(self.model(params["net"]), self.process, standardise(params, x),
                                 self.context(given), trace=self.trace, key=key,
                                 label=f"the likelihood ODE of '{self.ctx.name}'")
        return lp + log_jacobian(params)

    @staticmethod
    def _sampler_spec(spec):
        """The sampler given by ``sampler=``, else ``ode()`` with its defaults."""
        return spec["sampler"] if spec["sampler"] is not None else default_spec(ODE_SIGNATURE)

    @classmethod
    def static_cost(cls, spec, vtype, mechanisms) -> int:
        """The sampler's evaluations per solve, twice with guidance (0 for an adaptive solve: measured)."""
        sampler = cls._sampler_spec(spec)
        guided = bool(spec["given"]) and float(spec["guidance"]) != 0.0
        return (sampler_evaluations(sampler) or 0) * (2 if guided else 1)

    @classmethod
    def choices(cls, vtype):
        """Flow matching with an ODE sampler and a score SDE, for real variables."""
        if vtype.base != "real":
            return []
        return [
            cls.choice("evolve(flow_matching(), net=mlp(hidden=[128, 128]), sampler=ode(steps=32))",
                       "flow matching, heun ODE sampling; likelihood by the probability-flow ODE"),
            cls.choice("evolve(vp(), net=mlp(hidden=[128, 128]), sampler=sde(steps=256))",
                       "diffusion (score SDE), stochastic sampling; likelihood by the probability-flow ODE"),
        ]

    def describe(self):
        row = super().describe()
        row["mechanism"] = f"evolve {self.process.name}"
        return row

    # -- the "distillable" capability -----------------------------------------------------------
    @classmethod
    def student_spec(cls, spec: Spec, steps: int) -> Spec:
        """The right-hand side of this node distilled into a ``steps``-step map (``distilled``)."""
        return Spec("distilled", "mechanism", {"teacher": spec, "steps": int(steps), "given": spec["given"]})

    def teacher_paths(self, params, key: jax.Array, n: int, context, grid, steps_between: int) -> jax.Array:
        """``(n, K + 1, *shape)`` standardised probability-flow ODE paths at the decreasing times
        ``grid`` (``K + 1`` of them) from ``n`` prior draws; ``context`` ``(n, C)`` or None."""
        y1 = self.prior_draws(key, n)
        path = ode_path(self.model(params["net"], guided=True), self.process, y1, context, grid,
                        steps_between=steps_between)
        return jnp.moveaxis(path, 0, 1)
