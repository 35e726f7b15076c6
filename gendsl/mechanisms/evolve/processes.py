"""Gaussian processes from data (t = 0) to noise (t = 1): ``x_t = alpha(t) x_0 + sigma(t) eps``.

Every process here is a Gaussian interpolant, so one description serves all of them: its
marginal coefficients ``alpha(t), sigma(t)``, a prior ``N(0, (alpha(1)^2 + sigma(1)^2) I)`` for
data of unit variance, the diffusion ``g(t)^2`` of a reverse-time SDE with the same marginals,
and the time grid a sampler steps on. The forward SDE ``dx = f(t) x dt + g(t) dW`` of the
diffusion processes has ``f = alpha'/alpha`` and ``g^2 = 2 sigma sigma' - 2 f sigma^2``.

A model is a per-example function ``(t, x, c) -> (x0_hat, eps_hat)``: its estimate of the clean
point and of the noise, tied by ``x = alpha x0_hat + sigma eps_hat``. The probability-flow (or
velocity) ODE, the score and the reverse SDE's drift are linear in that pair (:func:`velocity`,
:func:`score`, :func:`reverse_drift`); :class:`FromScore` and :class:`FromVelocity` turn an
analytic score or velocity field into such a pair.

The processes are equinox modules with float fields, so they pass through ``jit`` as static.
"""

from __future__ import annotations

import abc
import math
from typing import Callable, ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from gendsl.core.catalog import Table
from gendsl.core.signatures import Param, Signature

__all__ = [
    "AbstractProcess",
    "VP",
    "SubVP",
    "VE",
    "FlowMatching",
    "EDM",
    "PROCESSES",
    "PROCESS_SIGNATURES",
    "build_process",
    "velocity",
    "score",
    "reverse_drift",
    "FromScore",
    "FromVelocity",
    "EDM_RHO",
]

#: ``vp(...)`` in the language
VP_SIGNATURE = Signature("vp", "process", (Param("beta_min", "number", 0.1), Param("beta_max", "number", 20.0)), "variance-preserving SDE")
#: ``subvp(...)`` in the language
SUBVP_SIGNATURE = Signature("subvp", "process", (Param("beta_min", "number", 0.1), Param("beta_max", "number", 20.0)), "sub-VP SDE")
#: ``ve(...)`` in the language
VE_SIGNATURE = Signature("ve", "process", (Param("sigma_min", "number", 0.01), Param("sigma_max", "number", 10.0)), "variance-exploding SDE")
#: ``flow_matching(...)`` in the language
FLOW_MATCHING_SIGNATURE = Signature("flow_matching", "process", (Param("ot", "bool", False),), "linear interpolant (rectified flow)")
#: ``edm(...)`` in the language
EDM_SIGNATURE = Signature("edm", "process", (
        Param("sigma_min", "number", 0.002), Param("sigma_max", "number", 80.0),
        Param("p_mean", "number", -1.2, doc="mean of log sigma in training (log-normal noise levels)"),
        Param("p_std", "number", 1.2, doc="standard deviation of log sigma in training"),
    ), "Karras et al. (2022): variance exploding in sigma, log-normal training noise levels, EDM weighting")

#: exponent of the Karras et al. (2022) time grid: steps concentrate where the noise is small
EDM_RHO = 7.0
#: bisection iterations when inverting the monotone log noise-to-signal ratio
_BISECTION = 60


class AbstractProcess(eqx.Module):
    """A Gaussian interpolant ``x_t = alpha(t) x0 + sigma(t) eps`` on ``t`` in ``[0, 1]``.

    Attributes
    ----------
    t_min:
        Where samplers stop and training starts (``t`` at which ``sigma / alpha`` is tiny).
    t_min_likelihood:
        Where the probability-flow log-density is evaluated (the data end of the ODE).
    """

    t_min: ClassVar[float]
    t_min_likelihood: ClassVar[float]
    name: ClassVar[str]

    @abc.abstractmethod
    def alpha_sigma(self, t: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Marginal coefficients at scalar ``t``: ``(alpha, sigma)``."""

    def rates(self, t: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Time derivatives ``(alpha', sigma')`` at scalar ``t``."""
        t = jnp.asarray(t, jnp.float32)
        return jax.jvp(self.alpha_sigma, (t,), (jnp.ones_like(t),))[1]

    def diffusion2(self, t: jax.Array) -> jax.Array:
        """``g(t)^2`` of the forward SDE with these marginals."""
        (alpha, sigma), (dalpha, dsigma) = self.alpha_sigma(t), self.rates(t)
        return 2 * sigma * dsigma - 2 * dalpha / alpha * sigma**2

    def noise_weight(self, t: jax.Array) -> jax.Array:
        """``g(t)^2 / (2 sigma(t))``: how the score enters the reverse SDE's drift (times -eps_hat)."""
        return self.diffusion2(t) / (2 * self.alpha_sigma(t)[1])

    def training_times(self, u: jax.Array) -> jax.Array:
        """The training times of the standard weighting from uniforms ``u`` in (0, 1): uniform on
        ``[t_min_likelihood, 1]`` (elementwise)."""
        lo = self.t_min_likelihood
        return lo + (1.0 - lo) * u

    def training_weight(self, t: jax.Array) -> jax.Array:
        """The standard weighting's factor on ``||eps_hat - eps||^2`` at ``t``: 1 (elementwise)."""
        return jnp.ones_like(t)

    def log_snr(self, t: jax.Array) -> jax.Array:
        """``log(sigma / alpha)`` at ``t`` (increasing in ``t``)."""
        alpha, sigma = self.alpha_sigma(t)
        return jnp.log(sigma) - jnp.log(alpha)

    @property
    def prior_std(self) -> float:
        """Standard deviation of the prior: ``sqrt(alpha(1)^2 + sigma(1)^2)`` (a Python float)."""
        with jax.ensure_compile_time_eval():
            alpha, sigma = self.alpha_sigma(jnp.float32(1.0))
            return float(jnp.sqrt(alpha**2 + sigma**2))

    def prior_sample(self, key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
        """Draws of the prior, ``shape`` = ``(n, d)``."""
        return self.prior_std * jax.random.normal(key, shape)

    def prior_log_prob(self, x: jax.Array) -> jax.Array:
        """Log-density of the prior for one example ``(d,)``: a scalar."""
        s = self.prior_std
        return jnp.sum(-0.5 * (x / s) ** 2 - math.log(s) - 0.5 * math.log(2 * math.pi))

    def t_of_log_snr(self, lam: jax.Array, lo: float = 0.0, hi: float = 1.0) -> jax.Array:
        """Invert :meth:`log_snr` on ``[lo, hi]`` by bisection (elementwise)."""

        def halve(_, bracket):
            a, b = bracket
            mid = 0.5 * (a + b)
            below = self.log_snr(mid) < lam
            return jnp.where(below, mid, a), jnp.where(below, b, mid)

        a = jnp.full(jnp.shape(lam), lo, jnp.float32)
        b = jnp.full(jnp.shape(lam), hi, jnp.float32)
        a, b = jax.lax.fori_loop(0, _BISECTION, halve, (a, b))
        return 0.5 * (a + b)

    def time_grid(self, steps: int, t_end: float | None = None) -> np.ndarray:
        """``steps + 1`` decreasing times from 1 to ``t_end`` (default :attr:`t_min`).

        Uniform in ``sigma/alpha ** (1/rho)`` (Karras et al. 2022), so steps crowd the data end.
        """
        t_end = self.t_min if t_end is None else t_end
        with jax.ensure_compile_time_eval():
            hi, lo = float(self.log_snr(jnp.float32(1.0))), float(self.log_snr(jnp.float32(t_end)))
            u = np.linspace(0.0, 1.0, steps + 1)
            s = (math.exp(hi / EDM_RHO) + u * (math.exp(lo / EDM_RHO) - math.exp(hi / EDM_RHO))) ** EDM_RHO
            inner = np.asarray(self.t_of_log_snr(jnp.log(jnp.asarray(s[1:-1], jnp.float32))))
        return np.concatenate([[1.0], inner, [t_end]]).astype(np.float64)


class _LinearBeta(AbstractProcess):
    """Drift ``-beta(t) x / 2`` with ``beta(t) = beta_min + t (beta_max - beta_min)``."""

    beta_min: float = 0.1
    beta_max: float = 20.0
    t_min: ClassVar[float] = 1e-3
    t_min_likelihood: ClassVar[float] = 1e-5

    def _integral(self, t):
        return self.beta_min * t + 0.5 * (self.beta_max - self.beta_min) * t**2

    def _beta(self, t):
        return self.beta_min + t * (self.beta_max - self.beta_min)


class VP(_LinearBeta):
    """Variance preserving: ``alpha = exp(-int beta / 2)``, ``alpha^2 + sigma^2 = 1``."""

    name: ClassVar[str] = "vp"

    def alpha_sigma(self, t):
        b = self._integral(t)
        return jnp.exp(-0.5 * b), jnp.sqrt(-jnp.expm1(-b))

    def diffusion2(self, t):
        return self._beta(t)


class SubVP(_LinearBeta):
    """Sub-VP (Song et al. 2021): the VP drift with ``sigma = 1 - alpha^2``."""

    name: ClassVar[str] = "subvp"

    def alpha_sigma(self, t):
        b = self._integral(t)
        return jnp.exp(-0.5 * b), -jnp.expm1(-b)

    def diffusion2(self, t):
        return -self._beta(t) * jnp.expm1(-2 * self._integral(t))


class VE(AbstractProcess):
    """Variance exploding: ``alpha = 1``, ``sigma(t) = sigma_min (sigma_max / sigma_min)^t``."""

    sigma_min: float = 0.01
    sigma_max: float = 10.0
    t_min: ClassVar[float] = 0.0
    t_min_likelihood: ClassVar[float] = 0.0
    name: ClassVar[str] = "ve"

    def alpha_sigma(self, t):
        t = jnp.asarray(t, jnp.float32)
        return jnp.ones_like(t), self.sigma_min * (self.sigma_max / self.sigma_min) ** t

    def diffusion2(self, t):
        return 2 * self.alpha_sigma(t)[1] ** 2 * math.log(self.sigma_max / self.sigma_min)


class FlowMatching(AbstractProcess):
    """Linear interpolant (rectified flow): ``alpha = 1 - t``, ``sigma = t``.

    Its reverse SDE uses ``g(t)^2 = 2 t`` (so ``g^2 / (2 sigma) = 1``), finite at both ends.
    ``ot`` asks training to pair data and noise by minibatch optimal transport.
    """

    ot: bool = False
    t_min: ClassVar[float] = 0.0
    t_min_likelihood: ClassVar[float] = 0.0
    name: ClassVar[str] = "flow_matching"

    def alpha_sigma(self, t):
        t = jnp.asarray(t, jnp.float32)
        return 1.0 - t, t

    def diffusion2(self, t):
        return 2.0 * jnp.asarray(t, jnp.float32)

    def noise_weight(self, t):
        return jnp.ones_like(jnp.asarray(t, jnp.float32))

    def time_grid(self, steps, t_end=None):
        """Uniform in ``t`` (the straight-line interpolant needs no warping)."""
        t_end = self.t_min if t_end is None else t_end
        return np.linspace(1.0, t_end, steps + 1)


class EDM(VE):
    """The noise levels of Karras et al. (2022, "EDM"): ``alpha = 1``, ``sigma`` from ``sigma_min`` to
    ``sigma_max`` (geometric in ``t``, so ``sigma`` itself is the process's time to a sampler).

    On the standardised data (``sigma_data = 1``) :class:`~gendsl.mechanisms.evolve.model.Denoiser`
    is EDM's preconditioned denoiser: ``c_skip = 1 / (sigma^2 + 1)``, ``c_out = sigma /
    sqrt(sigma^2 + 1)``, ``c_in = 1 / sqrt(sigma^2 + 1)``, ``c_noise = log(sigma) / 4``. Training
    draws ``log sigma ~ N(p_mean, p_std^2)`` and weighs ``||D - x_0||^2`` by ``lambda(sigma) =
    (sigma^2 + 1) / sigma^2``, which is ``(sigma^2 + 1) ||eps_hat - eps||^2``: the network's
    regression target has unit weight at every noise level.
    """

    sigma_min: float = 0.002
    sigma_max: float = 80.0
    p_mean: float = -1.2
    p_std: float = 1.2
    name: ClassVar[str] = "edm"

    def training_times(self, u):
        """``t`` of ``sigma = exp(p_mean + p_std * Phi^-1(u))``, clipped to the process's range."""
        log_sigma = self.p_mean + self.p_std * jax.scipy.special.ndtri(jnp.clip(u, 1e-6, 1 - 1e-6))
        t = (log_sigma - math.log(self.sigma_min)) / math.log(self.sigma_max / self.sigma_min)
        return jnp.clip(t, 0.0, 1.0)

    def training_weight(self, t):
        """EDM's ``lambda(sigma) sigma^2 = sigma^2 + 1`` (unit data variance)."""
        return self.alpha_sigma(t)[1] ** 2 + 1.0


#: language name -> process class (options are the signature's, by keyword)
PROCESSES = Table("process", {"vp": VP, "subvp": SubVP, "ve": VE, "flow_matching": FlowMatching, "edm": EDM})
#: the signature of each process, by name
PROCESS_SIGNATURES = Table("process", {s.name: s for s in (VP_SIGNATURE, SUBVP_SIGNATURE, VE_SIGNATURE,
                                                           FLOW_MATCHING_SIGNATURE, EDM_SIGNATURE)})


def build_process(spec) -> AbstractProcess:
    """The process of a resolved ``vp(...)`` / ``subvp(...)`` / ``ve(...)`` / ``flow_matching(...)`` /
    ``edm(...)`` spec."""
    cls = PROCESSES[spec.name]
    return cls(**{k: (bool(v) if k == "ot" else float(v)) for k, v in spec.options.items()})


# -- what a (x0_hat, eps_hat) prediction gives ------------------------------------------------------


def velocity(process: AbstractProcess, t, x0_hat, eps_hat):
    """The probability-flow / velocity ODE's field ``dx/dt = alpha' x0_hat + sigma' eps_hat``."""
    dalpha, dsigma = process.rates(t)
    return dalpha * x0_hat + dsigma * eps_hat


def score(process: AbstractProcess, t, eps_hat):
    """The score ``grad log p_t = -eps_hat / sigma``."""
    return -eps_hat / process.alpha_sigma(t)[1]


def reverse_drift(process: AbstractProcess, t, x0_hat, eps_hat):
    """Drift in ``t`` of the reverse-time SDE ``dx = [v - g^2 score / 2] dt + g dW`` (run from 1 to 0)."""
    return velocity(process, t, x0_hat, eps_hat) + process.noise_weight(t) * eps_hat


class FromScore(eqx.Module):
    """A model from a score function ``score_fn(t, x, c) -> grad log p_t(x)`` (one example)."""

    score_fn: Callable
    process: AbstractProcess

    def __call__(self, t, x, c=None):
        alpha, sigma = self.process.alpha_sigma(t)
        eps_hat = -sigma * self.score_fn(t, x, c)
        return (x - sigma * eps_hat) / alpha, eps_hat


class FromVelocity(eqx.Module):
    """A model from a velocity field ``velocity_fn(t, x, c) -> dx/dt`` (one example).

    Solves ``x = alpha x0 + sigma eps`` and ``v = alpha' x0 + sigma' eps`` for the pair.
    """

    velocity_fn: Callable
    process: AbstractProcess

    def __call__(self, t, x, c=None):
        (alpha, sigma), (dalpha, dsigma) = self.process.alpha_sigma(t), self.process.rates(t)
        v = self.velocity_fn(t, x, c)
        det = alpha * dsigma - sigma * dalpha
        return (dsigma * x - sigma * v) / det, (alpha * v - dalpha * x) / det
