"""What posterior inference returns: draws by variable, sampler statistics, and diagnostics."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gendsl.errors import GenRuntimeError
from gendsl.numerics.diagnostics import summarize, table

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
        deterministic quantity that depends on one, in their own (constrained) spaces.
    latents, deterministic:
        The names of each kind, in model order (the continuous latents, then the discrete ones).
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
    kernel:
        The kernel and its settings, in words.
    num_warmup:
        Warm-up transitions per chain.
    compile_seconds, sampling_seconds:
        Time to compile, and to run warm-up and sampling of every chain.
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
    _summary: Summary | None = field(default=None, repr=False)

    @property
    def divergences(self) -> Divergences:
        """Divergent transitions after warm-up: the total (an ``int``) and ``.per_chain``."""
        return Divergences(self.diverging.sum(axis=1))

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
            "gradient_evaluations": int(self.num_steps.sum()),
            "compile_seconds": self.compile_seconds,
            "sampling_seconds": self.sampling_seconds,
        }

    def to_arviz(self):
        """The draws and sampler statistics as an ``arviz.InferenceData`` (needs ``pip install arviz``)."""
        try:
            import arviz as az
        except ImportError:
            raise GenRuntimeError("to_arviz() needs ArviZ: pip install arviz (or pip install gendsl[arviz])") from None
        chains, draws = self.tree_depth.shape
        stats = {
            "diverging": self.diverging,
            "tree_depth": self.tree_depth,
            "n_steps": self.num_steps,
            "acceptance_rate": self.acceptance_rate,
            "step_size": np.broadcast_to(self.step_size[:, None], (chains, draws)),
        }
        return az.from_dict(posterior=dict(self.samples), sample_stats=stats)
