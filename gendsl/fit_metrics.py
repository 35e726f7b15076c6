"""What ``gendsl fit`` measures on the held-out split, and the line it prints.

:func:`evaluate_fit` gives the held-out NLL, the energy distance of samples to held-out data
against its noise floor, sampling time and cost, and log Z where a sampler estimates it;
:func:`image_quality` the ``images`` entry for a model of images
(:mod:`gendsl.image_metrics`); :func:`summary_line` the one line a person reads.
"""

from __future__ import annotations

import time
from typing import Any

import jax
import numpy as np

from gendsl.image_metrics import image_metrics
from gendsl.metrics import energy_distance, real_matrix
from gendsl.plots import image_layout

__all__ = ["METRIC_ROWS", "NLL_CHUNK", "NLL_SECONDS", "evaluate_fit", "heldout_log_prob", "heldout_nll_stats", "image_quality", "image_variables", "sampler_stats",
           "summary_line"]

#: most held-out examples (and model draws) the energy distance of ``gendsl fit`` is computed on
METRIC_ROWS = 5000
#: the held-out NLL is computed in chunks of this many examples (one compiled shape) ...
NLL_CHUNK = 64
#: ... until every held-out example is scored or this many seconds have passed (a density that is
#: an ODE solve through a U-Net can take minutes per chunk on a CPU): the examples are held out in
#: random order, so the ones scored are a random subsample, counted in ``heldout_n``
NLL_SECONDS = 60.0


def evaluate_fit(program, params, heldout: dict, key, fresh: dict | None = None) -> dict:
    """Held-out NLL, energy distance of samples to held-out data, sampling time and cost.

    Samples are drawn as many as there are held-out examples (at most :data:`METRIC_ROWS`: the
    energy distance costs the square of it), and the energy distance is the plain (V-statistic)
    estimate on those draws and as many held-out examples (``energy_distance_n``), so that it
    compares with the noise floor: the distance between the held-out data and ``fresh``, an
    independent draw of equal size, when one is given. With one held-out example there is no
    energy distance (None). The held-out NLL uses every held-out example that
    :func:`heldout_log_prob` scores within :data:`NLL_SECONDS` (``heldout_n`` of
    ``heldout_n_total``).
    """
    kind = program.log_prob_kind
    dims = {k: v for k, v in heldout.items() if np.ndim(v) == 0}
    metrics: dict[str, Any] = {"log_prob_kind": kind}
    if kind in ("exact", "estimate"):
        metrics.update(heldout_nll_stats(heldout_log_prob(program, params, heldout)))
        metrics["heldout_n_total"] = len(next(v for v in heldout.values() if np.ndim(v) > 0))
    else:
        metrics["heldout_nll"] = None
    k1, k2 = jax.random.split(key)
    n_test = min(len(next(v for v in heldout.values() if np.ndim(v) > 0)), METRIC_ROWS)
    inputs = {v.name: heldout[v.name][:n_test] for v in program.model.by_role("input") if v.name in heldout
              and np.ndim(heldout[v.name])}
    jax.block_until_ready(program.sample(params, k1, n_test, {**dims, **inputs}))  # compile
    t0 = time.perf_counter()
    draws, info = jax.block_until_ready(program.sample_with_info(params, k2, n_test, {**dims, **inputs}))
    seconds = time.perf_counter() - t0
    metrics["sample_seconds_per_1000"] = seconds * 1000.0 / n_test
    metrics["nfe_per_sample"] = int(sum(int(info[n.name]["nfe"]) if "nfe" in info.get(n.name, {}) else n.mechanism.cost()
                                        for n in program.lowered(heldout).stochastic))
    metrics.update(_log_normalisers(program, params, heldout, info, k1))
    if stats := sampler_stats(info):
        metrics["sampler_stats"] = stats
    real_test = real_matrix(program.model, heldout)
    real_test = real_test[:n_test] if real_test is not None else None  # held out in random order: a random subsample
    real_draws = real_matrix(program.model, {k: np.asarray(v) for k, v in draws.items()})
    metrics["energy_distance"] = None
    if real_test is not None and real_draws is not None and n_test >= 2:
        metrics["energy_distance_n"] = n_test
        metrics["energy_distance"] = float(energy_distance(real_draws, real_test, unbiased=False))
        real_fresh = real_matrix(program.model, fresh) if fresh is not None else None
        if real_fresh is not None:
            floor = float(energy_distance(real_fresh[:n_test], real_test, unbiased=False))
            metrics["energy_distance_noise_floor"] = floor
            metrics["energy_distance_over_floor"] = metrics["energy_distance"] / floor if floor > 0 else None
    metrics["_draws"] = draws
    return metrics


def sampler_stats(info: dict) -> dict:
    """What each node's sampler measured while drawing (``Program.sample_with_info``'s ``info``),
    as JSON: ``{node: {name: number or list}}``, e.g. parallel tempering's ``swap_rates`` ``(K - 1,)``
    and ``acceptance_rate`` ``(K,)``, SMC's ``log_z`` and ``tempering_steps``, annealed Langevin's
    per-level ``acceptance_rate``. The network-evaluation count ``nfe`` is reported on its own."""
    out = {}
    for node, measured in info.items():
        row = {k: np.asarray(v).tolist() for k, v in measured.items() if k != "nfe" and np.size(v) <= 256}
        if row:
            out[node] = row
    return out


def _log_normalisers(program, params, heldout: dict, info: dict, key) -> dict:
    """``{"log_z": {node: {"log_z", "se", "repeats"}}}`` for the nodes whose sampler estimated log Z
    (an energy sampled by ``smc``: the ``"log_normaliser"`` capability), else nothing."""
    nodes = [n for n in program.lowered(heldout).modelled
             if "log_normaliser" in type(n.mechanism).capabilities and "log_z" in info.get(n.name, {})]
    out = {}
    for node, k in zip(nodes, jax.random.split(key, max(1, len(nodes)))):
        repeats = 8
        log_z, se = node.mechanism.log_normaliser(params.get(node.name, {}), k, repeats)
        out[node.name] = {"log_z": log_z, "se": se, "repeats": repeats}
    return {"log_z": out} if out else {}


def heldout_log_prob(program, params, heldout: dict, chunk: int = NLL_CHUNK, seconds: float = NLL_SECONDS) -> np.ndarray:
    """``(m,)`` log-densities of the first ``m`` held-out examples: chunks of ``chunk`` rows (the
    last one padded, so one shape compiles), scored until all are done or ``seconds`` have passed
    (at least one chunk)."""
    rows = {k: np.asarray(v) for k, v in heldout.items() if np.ndim(v) > 0}
    dims = {k: v for k, v in heldout.items() if np.ndim(v) == 0}
    n = len(next(iter(rows.values())))
    chunk = min(chunk, n)
    out, t0 = [], time.perf_counter()
    for start in range(0, n, chunk):
        idx = np.minimum(np.arange(start, start + chunk), n - 1)
        lp = np.asarray(program.log_prob(params, {**dims, **{k: v[idx] for k, v in rows.items()}}))
        out.append(lp[: min(chunk, n - start)])
        if time.perf_counter() - t0 > seconds:
            break
    return np.concatenate(out)


def heldout_nll_stats(log_prob: np.ndarray) -> dict:
    """What the held-out negative log-likelihoods ``-log_prob`` (``(n,)``) say, in nats per example.

    ``heldout_nll`` is the mean (infinite when any point is), ``heldout_nll_se`` its standard
    error over the finite points, ``heldout_nll_median`` the median, ``heldout_nll_nonfinite`` the
    count of points whose density is 0 or undefined, and ``heldout_nll_extreme`` the count of
    points beyond Tukey's far fence with k = 10 (NLL above ``q75 + 10 (q75 - q25)``): a handful of
    exploding points, which move the mean, show there.
    """
    nll = -np.asarray(log_prob, dtype=np.float64).reshape(-1)
    finite = nll[np.isfinite(nll)]
    out = {"heldout_nll": float(np.mean(nll)) if len(nll) else None, "heldout_n": int(len(nll)),
           "heldout_nll_nonfinite": int(len(nll) - len(finite))}
    if len(finite):
        q25, q50, q75 = np.percentile(finite, [25, 50, 75])
        out.update(heldout_nll_se=float(np.std(finite, ddof=1) / np.sqrt(len(finite))) if len(finite) > 1 else None,
                   heldout_nll_median=float(q50), heldout_nll_extreme=int(np.sum(finite > q75 + 10.0 * (q75 - q25))))
    return out


def summary_line(metrics: dict) -> str:
    """One line a person reads after ``gendsl fit``: held-out NLL, energy distance, steps, time."""
    parts = []
    if metrics.get("heldout_nll") is not None:
        nll = f"held-out NLL {metrics['heldout_nll']:.4g}"
        if metrics.get("heldout_nll_se") is not None:
            nll += f" ± {metrics['heldout_nll_se']:.2g}"
        nll += f" nats (median {metrics.get('heldout_nll_median', float('nan')):.4g}"
        odd = [f"{metrics[k]} {w}" for k, w in (("heldout_nll_nonfinite", "non-finite"), ("heldout_nll_extreme", "extreme"))
               if metrics.get(k)]
        sub = metrics.get("heldout_n_total") not in (None, metrics.get("heldout_n"))
        parts.append(nll + (f"; {', '.join(odd)} of {metrics['heldout_n']}" if odd else "")
                     + (f"; on {metrics['heldout_n']} of {metrics['heldout_n_total']} held-out examples, the time "
                        f"allowed" if sub else "") + ")")
    if metrics.get("energy_distance") is not None:
        ed = f"energy distance {metrics['energy_distance']:.3g}"
        if metrics.get("energy_distance_over_floor") is not None:
            ed += f" ({metrics['energy_distance_over_floor']:.2f} x noise floor)"
        parts.append(ed)
    images = metrics.get("images", {})
    if images.get("classifier_agreement") is not None:
        parts.append(f"classifier agreement {images['classifier_agreement']:.2f} (the classifier's held-out accuracy "
                     f"{images['classifier_heldout_accuracy']:.2f})")
    if images.get("feature_distance_over_floor") is not None:
        parts.append(f"feature distance {images['feature_distance_over_floor']:.2f} x noise floor")
    extras = []
    if metrics.get("stopped_early"):
        extras.append("stopped early")
    if metrics.get("best_step") is not None:
        extras.append(f"kept step {metrics['best_step']}")
    if metrics.get("loss_spikes"):
        extras.append(f"{metrics['loss_spikes']} loss spike(s), the first at step {metrics['loss_spike_steps'][0]}")
    steps = f"{metrics.get('steps_taken', metrics.get('steps'))} steps in {metrics.get('train_seconds', 0.0):.1f} s"
    parts.append(steps + (f" ({'; '.join(extras)})" if extras else ""))
    return "; ".join(parts)


def image_variables(model, draws: dict) -> tuple[str | None, str | None]:
    """The model's one image variable (``real[C, H, W]`` with C 1 or 3, or ``real[H, W]``) and its
    label (the one one-element token variable in ``draws``), each None when there is none."""
    reals = [v.name for v in model.by_role("observed") if v.type.base in ("real", "positive", "unit") and v.name in draws]
    labels = [v.name for v in model.by_role("observed", "input") if v.type.base == "token" and v.name in draws
              and np.ndim(draws[v.name]) >= 1 and np.size(draws[v.name]) == len(draws[v.name])]
    image = reals[0] if len(reals) == 1 and image_layout(np.shape(draws[reals[0]])[1:]) is not None else None
    return image, labels[0] if len(labels) == 1 else None


def image_quality(model, draws: dict, train: dict, heldout: dict, key) -> dict:
    """metrics.json's ``images`` entry (:func:`gendsl.image_metrics.image_metrics`) for a model of
    images, with the label's classifier when it has one; empty for other models."""
    image, label = image_variables(model, draws)
    if image is None:
        return {}
    labels = {}
    if label is not None:
        labels = dict(sample_labels=np.asarray(draws[label]).reshape(-1), train_labels=train[label],
                      heldout_labels=heldout[label], classes=int(model[label].type.vocab))
    return {"images": image_metrics(np.asarray(draws[image]), train[image], heldout[image], key, **labels)}
