"""MCMC diagnostics of draws shaped ``(chains, draws, ...)``, in NumPy.

Bulk ESS and R-hat are the rank-normalised ones of Vehtari et al. (2021), as ArviZ and Stan
report them: draws are pooled, ranked and mapped through the normal quantile function, then
numpyro's effective sample size (of the split chains) and split R-hat are applied; R-hat is the
larger of the bulk and the folded (|x - median|) values. Tail ESS is the smaller ESS of the
indicators of the 5% and 95% quantiles (split chains). :func:`convergence_problems` says, one
line each, where R-hat is above :data:`R_HAT_LIMIT` or an ESS below :data:`ESS_PER_CHAIN` a chain. The Monte-Carlo standard error of the
mean uses numpyro's classic ESS.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
from numpyro.diagnostics import effective_sample_size, split_gelman_rubin

__all__ = ["STATS", "R_HAT_LIMIT", "ESS_PER_CHAIN", "rank_normalize", "ess_bulk", "ess_tail", "r_hat", "summarize",
           "convergence_problems", "e_bfmi", "table"]

#: the statistics :func:`summarize` reports for each variable
STATS = ("mean", "sd", "mcse_mean", "q5", "q50", "q95", "ess_bulk", "ess_tail", "r_hat")
#: R-hat above this says the chains have not mixed (Vehtari et al. 2021)
R_HAT_LIMIT = 1.01
#: bulk or tail ESS below this many per chain is too few for reliable estimates (Vehtari et al. 2021)
ESS_PER_CHAIN = 100


def rank_normalize(x: np.ndarray) -> np.ndarray:
    """Pooled ranks (ties averaged) mapped to normal scores, ``(chains, draws, ...)`` -> same."""
    # scipy is imported where it is used: scipy.stats takes 0.4 s to import, paid at every start
    from scipy.special import ndtri
    from scipy.stats import rankdata

    flat = x.reshape(x.shape[0] * x.shape[1], *x.shape[2:])
    ranks = rankdata(flat, axis=0, method="average")
    return ndtri((ranks - 0.375) / (flat.shape[0] + 0.25)).reshape(x.shape)


def _split(x: np.ndarray) -> np.ndarray:
    half = x.shape[1] // 2
    return np.concatenate([x[:, :half], x[:, x.shape[1] - half:]], axis=0)


def _constant(x: np.ndarray) -> np.ndarray:
    flat = x.reshape(x.shape[0] * x.shape[1], -1)
    return (flat.max(axis=0) == flat.min(axis=0)).reshape(x.shape[2:])


def ess_bulk(x: np.ndarray) -> np.ndarray:
    """Bulk effective sample size of ``(chains, draws, ...)`` draws: shape ``(...)`` (NaN if constant)."""
    x = np.asarray(x, dtype=np.float64)
    if x.shape[1] < 4:
        return np.full(x.shape[2:], np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        ess = effective_sample_size(_split(rank_normalize(x)))
    return np.where(_constant(x), np.nan, ess)


def ess_tail(x: np.ndarray) -> np.ndarray:
    """Tail effective sample size of ``(chains, draws, ...)`` draws: the smaller ESS of the indicators
    ``x <= q05`` and ``x <= q95`` (split chains), shape ``(...)`` (NaN if constant)."""
    x = np.asarray(x, dtype=np.float64)
    if x.shape[1] < 4:
        return np.full(x.shape[2:], np.nan)
    flat = x.reshape(x.shape[0] * x.shape[1], *x.shape[2:])
    out = []
    for q in (0.05, 0.95):
        below = (x <= np.quantile(flat, q, axis=0)).astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            out.append(effective_sample_size(_split(below)))
    return np.where(_constant(x), np.nan, np.minimum(*out))


def r_hat(x: np.ndarray) -> np.ndarray:
    """Rank-normalised split R-hat (max of bulk and folded) of ``(chains, draws, ...)``: shape ``(...)``."""
    x = np.asarray(x, dtype=np.float64)
    if x.shape[1] < 4:
        return np.full(x.shape[2:], np.nan)
    flat = x.reshape(x.shape[0] * x.shape[1], *x.shape[2:])
    folded = np.abs(x - np.median(flat, axis=0))
    with np.errstate(invalid="ignore", divide="ignore"):
        value = np.maximum(split_gelman_rubin(rank_normalize(x)), split_gelman_rubin(rank_normalize(folded)))
    return np.where(_constant(x), np.nan, value)


def _scalar_or_array(a: np.ndarray):
    return float(a) if a.ndim == 0 else a


def summarize(draws: Mapping[str, np.ndarray]) -> dict[str, dict]:
    """Per variable: mean, sd, Monte-Carlo standard error of the mean, 5/50/95% quantiles, bulk
    and tail ESS and R-hat.

    Parameters
    ----------
    draws:
        Name -> array of shape ``(chains, draws, *event)``.

    Returns
    -------
    dict
        Name -> ``{stat: value}``, each value a float for a scalar variable or an array of shape
        ``event`` (R-hat and ESS are NaN for a constant quantity or fewer than 4 draws a chain).
    """
    out = {}
    for name, value in draws.items():
        x = np.asarray(value, dtype=np.float64)
        flat = x.reshape(x.shape[0] * x.shape[1], *x.shape[2:])
        sd = flat.std(axis=0, ddof=1) if flat.shape[0] > 1 else np.zeros(x.shape[2:])
        with np.errstate(invalid="ignore", divide="ignore"):
            ess = effective_sample_size(x) if x.shape[1] >= 2 else np.ones(x.shape[2:])
        q5, q50, q95 = np.quantile(flat, [0.05, 0.5, 0.95], axis=0)
        stats = {
            "mean": flat.mean(axis=0),
            "sd": sd,
            "mcse_mean": sd / np.sqrt(np.maximum(np.nan_to_num(ess, nan=1.0), 1.0)),
            "q5": q5,
            "q50": q50,
            "q95": q95,
            "ess_bulk": ess_bulk(x),
            "ess_tail": ess_tail(x),
            "r_hat": r_hat(x),
        }
        out[name] = {k: _scalar_or_array(np.asarray(v, dtype=np.float64)) for k, v in stats.items()}
    return out


def convergence_problems(summary: Mapping[str, Mapping[str, object]], names, num_chains: int) -> list[str]:
    """One line for each check the variables ``names`` of :func:`summarize`'s ``summary`` fail:
    R-hat above :data:`R_HAT_LIMIT`, bulk or tail ESS below :data:`ESS_PER_CHAIN` per chain
    (each line names the worst variables and their values). NaN values (constants) pass."""
    def worst(stat, bad, reverse):
        found = []
        for name in names:
            v = np.asarray(summary[name][stat], dtype=np.float64).reshape(-1)
            v = v[np.isfinite(v)]
            if v.size and bad(v).any():
                found.append((float(v.max() if reverse else v.min()), name))
        found.sort(reverse=reverse)
        return ", ".join(f"{name} {value:.3g}" for value, name in found[:5]) if found else None

    need = ESS_PER_CHAIN * num_chains
    out = []
    rhat = worst("r_hat", lambda v: v > R_HAT_LIMIT, True)
    if rhat:
        out.append(f"r_hat above {R_HAT_LIMIT} ({rhat}): the chains have not converged to one distribution; "
                   f"run longer, or reparameterise")
    for stat, words in (("ess_bulk", "bulk"), ("ess_tail", "tail")):
        low = worst(stat, lambda v: v < need, False)
        if low:
            out.append(f"{words} ESS below {ESS_PER_CHAIN} a chain ({need} for {num_chains} chains: {low}): too few "
                       f"effective draws for reliable {'means' if stat == 'ess_bulk' else 'quantiles'}; draw more "
                       f"samples")
    return out


def e_bfmi(energy: np.ndarray) -> np.ndarray:
    """The energy Bayesian fraction of missing information of each chain, ``(C, N) -> (C,)``:
    ``sum(diff(E)^2) / sum((E - mean E)^2)`` over a chain's Hamiltonian energies (Betancourt, 2016).
    Below 0.3 the momentum resampling explores the energy levels poorly (a heavy tail, a funnel).
    NaN for kernels without an energy."""
    e = np.asarray(energy, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.sum(np.diff(e, axis=1) ** 2, axis=1) / np.sum((e - e.mean(axis=1, keepdims=True)) ** 2, axis=1)


def table(summary: Mapping[str, Mapping[str, object]], max_rows: int = 60) -> str:
    """A plain-text table of :func:`summarize`'s result, one row per scalar element."""
    header = f"{'':>14} " + " ".join(f"{s:>10}" for s in STATS)
    rows = [header]
    for name, stats in summary.items():
        arrays = {k: np.asarray(stats[k], dtype=np.float64) for k in STATS}
        shape = arrays["mean"].shape
        for index in np.ndindex(*shape):
            if len(rows) > max_rows:
                rows.append(f"... ({sum(np.asarray(s['mean']).size for s in summary.values())} scalars in all)")
                return "\n".join(rows)
            label = f"{name}[{','.join(map(str, index))}]" if shape else name
            cells = []
            for k in STATS:
                v = float(arrays[k][index])
                cells.append(f"{v:>10.0f}" if k == "ess_bulk" and np.isfinite(v) else f"{v:>10.4g}")
            rows.append(f"{label[:14]:>14} " + " ".join(cells))
    return "\n".join(rows)
