"""What every callable name in a ``.gen`` file accepts: pure data, no JAX.

Calls fall in categories: ``distribution`` (leaf right-hand sides), ``mechanism`` (the four
mechanisms and ``prior``), and option categories nested inside mechanisms (``network``,
``map``, ``process``, ``sampler``, ``kernel``, ``objective``). The semantic checks resolve a
call against its :class:`Signature` into a :class:`Spec` (name + validated options), so an
implementation receives clean Python values and never re-validates.

Adding an option or a new network is a one-line change here plus its implementation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["REQUIRED", "Param", "Signature", "Spec", "SIGNATURES", "by_category", "DISTRIBUTIONS"]


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Any = _Required()

#: Option kinds: "int", "number", "str", "bool", "ints" (list of ints), "names" (one variable
#: name or a list of them), "expr" (an expression over variables), "int_or_str",
#: "<category>" (a nested call of that category), "<category>|name" (a call or a variable),
#: "expr|network" (an energy: expression or network).


@dataclass(frozen=True)
class Param:
    name: str
    kind: str
    default: Any = REQUIRED
    choices: tuple = ()
    doc: str = ""


@dataclass(frozen=True)
class Signature:
    """A callable name: its category and parameters (positional in the order given)."""

    name: str
    category: str
    params: tuple[Param, ...] = ()
    doc: str = ""
    support: str | None = None  # distributions: base type of a draw ("real", "positive", ...)
    event: str = "broadcast"  # distributions: how the draw's shape follows the arguments

    def param(self, name: str) -> Param | None:
        for p in self.params:
            if p.name == name:
                return p
        return None


@dataclass(frozen=True)
class Spec:
    """A resolved call: its name, category and every option with its default filled in."""

    name: str
    category: str
    options: dict = field(default_factory=dict)

    def __getitem__(self, key: str):
        return self.options[key]

    def get(self, key: str, default=None):
        return self.options.get(key, default)

    def __hash__(self) -> int:
        return hash((self.name, self.category, repr(sorted(self.options.items(), key=lambda kv: kv[0]))))


def _dist(name, params, support, event="broadcast", doc=""):
    return Signature(name, "distribution", tuple(Param(p, "expr") for p in params), doc, support, event)


DISTRIBUTIONS = [
    _dist("normal", ["loc", "scale"], "real"),
    _dist("half_normal", ["scale"], "positive"),
    _dist("cauchy", ["loc", "scale"], "real"),
    _dist("half_cauchy", ["scale"], "positive"),
    _dist("student_t", ["df", "loc", "scale"], "real"),
    _dist("exponential", ["rate"], "positive"),
    _dist("gamma", ["shape", "rate"], "positive"),
    _dist("inv_gamma", ["shape", "rate"], "positive"),
    _dist("beta", ["a", "b"], "unit"),
    _dist("lognormal", ["loc", "scale"], "positive"),
    _dist("uniform", ["low", "high"], "interval"),
    _dist("laplace", ["loc", "scale"], "real"),
    _dist("logistic", ["loc", "scale"], "real"),
    _dist("bernoulli", ["p"], "int"),
    _dist("bernoulli_logit", ["logit"], "int"),
    _dist("binomial", ["n", "p"], "int"),
    _dist("binomial_logit", ["n", "logit"], "int"),
    _dist("poisson", ["rate"], "int"),
    _dist("poisson_log", ["log_rate"], "int"),
    _dist("negative_binomial", ["mean", "concentration"], "int"),
    _dist("categorical", ["probs"], "int", event="drop_last"),
    _dist("categorical_logit", ["logits"], "int", event="drop_last"),
    _dist("dirichlet", ["alpha"], "simplex", event="first"),
    _dist("multivariate_normal", ["loc", "cov"], "real", event="mvn"),
    _dist("multivariate_normal_cholesky", ["loc", "scale_tril"], "real", event="mvn"),
    _dist("lkj_cholesky", ["dim", "concentration"], "corr_cholesky", event="lkj"),
]

_NETWORKS = [
    Signature("mlp", "network", (
        Param("hidden", "ints", (64, 64)),
        Param("activation", "str", "silu", ("silu", "relu", "tanh", "gelu", "elu", "softplus")),
        Param("components", "int", 8, doc="mixture components when used by factorize on reals"),
    ), "a multilayer perceptron"),
    Signature("made", "network", (
        Param("hidden", "ints", (64, 64)),
        Param("components", "int", 8),
        Param("activation", "str", "silu", ("silu", "relu", "tanh", "gelu", "elu", "softplus")),
    ), "masked autoregressive network (MADE), mixture conditionals for reals"),
    Signature("transformer", "network", (
        Param("layers", "int", 2),
        Param("width", "int", 64),
        Param("heads", "int", 4),
        Param("components", "int", 8),
    ), "causal transformer"),
]

_MAPS = [
    Signature("coupling", "map", (
        Param("layers", "int", 8), Param("hidden", "ints", (64, 64)),
        Param("activation", "str", "silu", ("silu", "relu", "tanh", "gelu", "elu", "softplus")),
    ), "affine coupling flow (RealNVP)"),
    Signature("spline", "map", (
        Param("layers", "int", 4), Param("bins", "int", 8), Param("hidden", "ints", (64, 64)),
        Param("bound", "number", 4.0),
        Param("activation", "str", "silu", ("silu", "relu", "tanh", "gelu", "elu", "softplus")),
    ), "rational-quadratic spline coupling flow"),
    Signature("maf", "map", (
        Param("layers", "int", 5), Param("hidden", "ints", (64, 64)),
        Param("activation", "str", "silu", ("silu", "relu", "tanh", "gelu", "elu", "softplus")),
    ), "masked autoregressive flow"),
    Signature("cnf", "map", (
        Param("net", "network", None), Param("trace", "str", "exact", ("exact", "hutchinson")),
        Param("train", "str", "likelihood", ("likelihood", "flow_matching")),
        Param("rtol", "number", 1e-3), Param("atol", "number", 1e-5), Param("steps", "int_or_str", "adaptive"),
        Param("max_steps", "int", 1000, doc="most solver steps of one adaptive solve"),
    ), "continuous normalizing flow"),
    Signature("generator", "map", (
        Param("net", "network", None), Param("critic", "network", None),
        Param("latent", "int", 0, doc="latent dimension (0: the variable's size)"),
        Param("penalty", "number", 10.0), Param("critic_steps", "int", 5),
        Param("ema", "number", 0.99, doc="decay of the moving average of the generator kept for sampling (0: none)"),
    ), "implicit generator trained adversarially (WGAN-GP)"),
]

_PROCESSES = [
    Signature("vp", "process", (Param("beta_min", "number", 0.1), Param("beta_max", "number", 20.0)), "variance-preserving SDE"),
    Signature("subvp", "process", (Param("beta_min", "number", 0.1), Param("beta_max", "number", 20.0)), "sub-VP SDE"),
    Signature("ve", "process", (Param("sigma_min", "number", 0.01), Param("sigma_max", "number", 10.0)), "variance-exploding SDE"),
    Signature("flow_matching", "process", (Param("ot", "bool", False),), "linear interpolant (rectified flow)"),
]

_SAMPLERS = [
    Signature("ode", "sampler", (
        Param("steps", "int_or_str", 64), Param("solver", "str", "heun", ("euler", "heun", "midpoint", "tsit5")),
        Param("rtol", "number", 1e-3), Param("atol", "number", 1e-5),
    ), "probability-flow / velocity ODE"),
    Signature("sde", "sampler", (
        Param("steps", "int", 256), Param("corrector", "int", 0), Param("snr", "number", 0.16),
    ), "reverse-time SDE (Euler-Maruyama)"),
]

_CHAINS_DOC = "0: every draw is the last state of its own chain; C > 0: draws spread over C long chains"

_KERNELS = [
    Signature("nuts", "kernel", (
        Param("warmup", "int", 500), Param("steps", "int", 1000), Param("max_depth", "int", 10),
        Param("target_accept", "number", 0.95), Param("mass", "str", "auto", ("auto", "dense", "diagonal")),
        Param("chains", "int", 0, doc=_CHAINS_DOC),
        Param("step_size", "number", 1.0, doc="initial step size (kept when warmup=0)"),
    ), "No-U-Turn sampler with window adaptation"),
    Signature("hmc", "kernel", (
        Param("steps", "int", 1000), Param("warmup", "int", 500), Param("step_size", "number", 0.1),
        Param("leapfrog", "int", 16), Param("mass", "str", "auto", ("auto", "dense", "diagonal")),
        Param("chains", "int", 0, doc=_CHAINS_DOC), Param("target_accept", "number", 0.9),
    ), "Hamiltonian Monte Carlo with window adaptation"),
    Signature("mala", "kernel", (
        Param("step_size", "number", 0.01), Param("steps", "int", 200), Param("warmup", "int", 0),
        Param("chains", "int", 0, doc=_CHAINS_DOC), Param("target_accept", "number", 0.574),
    ), "Metropolis-adjusted Langevin (step size adapted during warm-up)"),
    Signature("langevin", "kernel", (
        Param("step_size", "number", 0.01), Param("steps", "int", 200), Param("warmup", "int", 0),
        Param("chains", "int", 0, doc=_CHAINS_DOC),
    ), "unadjusted Langevin algorithm"),
]

_OBJECTIVES = [
    Signature("dsm", "objective", (Param("sigma", "number", 0.1),), "denoising score matching"),
    Signature("ssm", "objective", (Param("projections", "int", 1),), "sliced score matching"),
    Signature("cd", "objective", (
        Param("steps", "int", 20), Param("buffer", "int", 1024), Param("reinit", "number", 0.05),
        Param("alpha", "number", 0.1, doc="weight of the L2 penalty on the energies"),
    ), "contrastive divergence with a replay buffer"),
]

_MECHANISMS = [
    Signature("factorize", "mechanism", (Param("net", "network"), Param("given", "names", ())),
              "autoregressive chain rule"),
    Signature("pushforward", "mechanism", (Param("base", "distribution|name"), Param("map", "map"), Param("given", "names", ())),
              "x = T(z), z ~ base"),
    Signature("evolve", "mechanism", (
        Param("process", "process"), Param("net", "network", None), Param("sampler", "sampler", None),
        Param("given", "names", ()), Param("guidance", "number", 0.0), Param("ema", "number", 0.999),
        Param("weighting", "str", "standard", ("standard", "likelihood")),
        Param("trace", "str", "auto", ("auto", "exact", "hutchinson")),
        Param("dropout", "number", 0.1, doc="probability of dropping the given= context in training (guidance)"),
        Param("time_sampling", "str", "stratified", ("stratified", "antithetic", "uniform")),
    ), "diffusion / flow matching"),
    Signature("energy", "mechanism", (
        Param("E", "expr|network"), Param("sampler", "kernel", None), Param("train", "objective", None),
        Param("base", "distribution|mechanism|name", None), Param("given", "names", ()),
    ), "p(x) proportional to exp(-E(x))"),
    Signature("prior", "mechanism", (Param("run", "source"), Param("node", "str", None)),
              "the distribution a finished `gendsl fit` run learned"),
]

SIGNATURES: dict[str, Signature] = {
    s.name: s for s in [*DISTRIBUTIONS, *_NETWORKS, *_MAPS, *_PROCESSES, *_SAMPLERS, *_KERNELS, *_OBJECTIVES, *_MECHANISMS]
}


def by_category(category: str) -> dict[str, Signature]:
    """All signatures of one category, by name."""
    return {n: s for n, s in SIGNATURES.items() if s.category == category}
