"""What posterior inference returns: draws by variable, sampler statistics, and diagnostics."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from gendsl.inference import inference_data
from gendsl.inference.marginal import MarginalLikelihood
from gendsl.numerics.diagnostics import e_bfmi, summarize, table

__all__ = ["Divergences", "Summary", "Posterior"]


class Divergences(int):
    """The number of divergent transitions after warm-up (an ``int``: the total), with the count of
    each chain in :attr:`per_chain` (iterating gives those counts too)."""

    per_chain: np.ndarray

    def __new__(cls, per_chain):
        per_chain = np.asarray(per_chain, dtype=np.int64)
        obj = super().__new__(cls, int(per_chain.sum()))
        obj.per_chain = per_chain
        return obj

    def __iter__(self):
        return iter(int(c) for c in self.per_chain)

    def __len__(self) -> int:
        return len(self.per_chain)

    def sum(self) -> int:
        return int(self)

    def __repr__(self) -> str:
        return f"Divergences({int(self)}, per_chain={self.per_chain.tolist()})"


class Summary(dict):
    """Per variable ``{stat: value}`` (see :func:`gendsl.numerics.diagnostics.summarize`); ``str()`` is a table."""

    def __str__(self) -> str:
        return table(self)


@dataclass
class Posterior:
    """Draws from a posterior and how they were made.

    Attributes
    ----------
    samples:
        Name -> array of shape ``(chains, draws, *shape)``: every latent variable and every
        deterministic quantity that depends on one (``local`` ones excepted), in their own
        (constrained) spaces, and every ``generated`` quantity.
    latents, deterministic:
        The names of each kind, in model order (the continuous latents, then the discrete ones).
    generated, predictive:
        The ``generated`` quantities (drawn with ``~`` or computed with ``=`` per draw, outside the
        log density), and those of them drawn with ``~`` (ArviZ's ``posterior_predictive`` group).
    probabilities:
        For each discrete latent (summed out of the log joint, then drawn per draw from its
        conditional distribution given the continuous ones): its conditional probabilities per
        draw, shape ``(chains, draws, *shape, K)``; for each ``hmm(...)`` variable, the posterior
        probabilities of its hidden states per draw, ``(chains, draws, T, K)``.
    diverging:
        Whether each transition after warm-up diverged, shape ``(chains, draws)``.
    step_size:
        Adapted step size of each chain, shape ``(chains,)``.
    inverse_mass_matrix:
        Adapted inverse mass matrix of each chain: ``(chains, d)`` (diagonal) or ``(chains, d, d)``.
    tree_depth, num_steps, acceptance_rate:
        Per transition, shape ``(chains, draws)`` (tree depth is 0 for kernels other than NUTS).
    energy, lp:
        Per kept draw, ``(chains, draws)``: the Hamiltonian energy (NaN for kernels without a
        momentum) and the log joint density in unconstrained space (Stan's ``lp__``).
    observed_data, constant_data:
        The observed variables' values and the other data (inputs), for ArviZ's groups.
    kernel:
        The kernel and its settings, in words.
    num_warmup:
        Warm-up transitions per chain.
    compile_seconds, sampling_seconds:
        Time to compile, and to run warm-up and sampling of every chain.
    log_marginal_likelihood:
        ``log p(data)`` with its standard error (``infer(log_marginal=True)``;
        :mod:`gendsl.inference.marginal`), else None.
    """

    samples: dict[str, np.ndarray]
    latents: tuple[str, ...]
    deterministic: tuple[str, ...]
    diverging: np.ndarray
    step_size: np.ndarray
    inverse_mass_matrix: np.ndarray
    tree_depth: np.ndarray
    num_steps: np.ndarray
    acceptance_rate: np.ndarray
    kernel: str
    num_warmup: int
    max_tree_depth: int = 10
    compile_seconds: float = 0.0
    sampling_seconds: float = 0.0
    probabilities: dict[str, np.ndarray] = field(default_factory=dict)
    generated: tuple[str, ...] = ()
    predictive: tuple[str, ...] = ()
    energy: np.ndarray | None = None
    lp: np.ndarray | None = None
    observed_data: dict[str, np.ndarray] = field(default_factory=dict)
    constant_data: dict[str, np.ndarray] = field(default_factory=dict)
    log_marginal_likelihood: MarginalLikelihood | None = None
    #: computes the pointwise log-likelihood of every draw on demand (see :meth:`log_likelihood`)
    pointwise: Callable[[], dict[str, np.ndarray]] | None = field(default=None, repr=False)
    _summary: Summary | None = field(default=None, repr=False)
    _log_likelihood: dict[str, np.ndarray] | None = field(default=None, repr=False)

    @property
    def divergences(self) -> Divergences:
        """Divergent transitions after warm-up: the total (an ``int``) and ``.per_chain``."""
        return Divergences(self.diverging.sum(axis=1))

    @property
    def e_bfmi(self) -> np.ndarray:
        """E-BFMI of each chain, ``(chains,)`` (:func:`~gendsl.numerics.diagnostics.e_bfmi`; NaN
        without energies). Below 0.3 the chain explores the energy levels poorly."""
        return e_bfmi(self.energy) if self.energy is not None else np.full(self.num_chains, np.nan)

    def log_likelihood(self) -> dict[str, np.ndarray]:
        """Pointwise log-likelihood of every draw: observed name -> ``(chains, draws, *batch)`` (a
        leaf distribution's elements; one value per draw for another mechanism). Computed on the
        first call (one compiled pass over the draws), for ``az.loo`` / ``az.waic``."""
        if self._log_likelihood is None:
            self._log_likelihood = self.pointwise() if self.pointwise is not None else {}
        return self._log_likelihood

    @property
    def num_chains(self) -> int:
        return int(self.step_size.shape[0])

    @property
    def num_samples(self) -> int:
        return int(self.tree_depth.shape[1])

    def summary(self) -> Summary:
        """Per variable: mean, sd, mcse_mean, q5, q50, q95, ess_bulk, r_hat (``str()`` of it is a table)."""
        if self._summary is None:
            self._summary = Summary(summarize(self.samples))
        return self._summary

    def summary_table(self) -> str:
        """The summary as a plain-text table, with the sampler's statistics underneath."""
        return f"{self.summary()}\n{self._footer()}"

    def _footer(self) -> str:
        div = self.divergences
        steps = ", ".join(f"{s:.3g}" for s in self.step_size)
        line = (f"{self.kernel}: {self.num_chains} chains x {self.num_samples} draws after {self.num_warmup} warm-up; "
                f"divergences {int(div)} (per chain {div.per_chain.tolist()}); step sizes {steps}")
        if "nuts" in self.kernel:
            line += (f"; mean tree depth {float(self.tree_depth.mean()):.2f}, "
                     f"{int((self.tree_depth >= self.max_tree_depth).sum())} at the maximum {self.max_tree_depth}")
        if np.all(np.isfinite(self.e_bfmi)):
            line += "; E-BFMI " + ", ".join(f"{b:.2f}" for b in self.e_bfmi)
        if self.log_marginal_likelihood is not None:
            line += f"; log p(data) {self.log_marginal_likelihood.value:.4g} ± {self.log_marginal_likelihood.se:.2g}"
        return line

    def __str__(self) -> str:
        return self.summary_table()

    def sampler_stats(self) -> dict[str, Any]:
        """The sampler's statistics as plain Python values (for JSON)."""
        return {
            "kernel": self.kernel,
            "num_chains": self.num_chains,
            "num_samples": self.num_samples,
            "num_warmup": self.num_warmup,
            "divergences": {"total": int(self.divergences), "per_chain": self.divergences.per_chain.tolist()},
            "step_size": self.step_size.tolist(),
            "mean_tree_depth": self.tree_depth.mean(axis=1).tolist(),
            "max_tree_depth_hits": (self.tree_depth >= self.max_tree_depth).sum(axis=1).tolist(),
            "mean_acceptance_rate": self.acceptance_rate.mean(axis=1).tolist(),
            "e_bfmi": [float(b) if np.isfinite(b) else None for b in self.e_bfmi],
            "gradient_evaluations": int(self.num_steps.sum()),
            "compile_seconds": self.compile_seconds,
            "sampling_seconds": self.sampling_seconds,
            **({"log_marginal_likelihood": self.log_marginal_likelihood.as_dict()}
               if self.log_marginal_likelihood is not None else {}),
        }

    def to_arviz(self):
        """The draws, sampler statistics (Stan's names), pointwise log-likelihood and data as an
        ``arviz.InferenceData`` (needs ``pip install arviz``); see :mod:`gendsl.inference.inference_data`."""
        return inference_data.to_arviz(self)

    def to_netcdf_bytes(self) -> bytes:
        """The same groups as a netCDF-4 file's contents (``arviz.from_netcdf`` reads it), written
        without importing ArviZ."""
        return inference_data.netcdf_bytes(self)
