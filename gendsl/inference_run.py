"""``gendsl infer FILE.gen --data FILE.json --out DIR``: posterior inference written to a folder.

The folder receives ``summary.json`` (per variable: mean, sd, mcse_mean, quantiles, ess_bulk,
ess_tail, r_hat; ``divergences``: the total and the count of each chain; ``warnings``: every
warning of the run, one line each), ``sampler.json`` (kernel, step
sizes, tree depths, acceptance, E-BFMI, timings), ``draws.npz`` (every variable, shape
``(chains, draws, ...)``), ``posterior.nc`` (ArviZ's InferenceData as netCDF: posterior,
sample_stats, pointwise log_likelihood, observed and constant data; ``arviz.from_netcdf`` reads
it) and ``trace.png``.
"""

from __future__ import annotations

import io
import json
import warnings
import zipfile
from pathlib import Path

import jax
import numpy as np

from gendsl import api
from gendsl.errors import GenDataError
from gendsl.numerics.confined import atomic_write_bytes, atomic_write_text, check_npz, output_root, read_text
from gendsl.plots import trace_plot

__all__ = ["read_data", "write_posterior", "infer_run", "posterior_summary"]


def read_data(path: str | Path) -> dict:
    """A data set from a ``.json`` object (or an ``.npz`` archive) keyed by variable name."""
    path = Path(path)
    if not path.exists():
        raise GenDataError(f"data file '{path}' does not exist")
    if path.suffix == ".npz":
        try:
            with np.load(check_npz(path, "the data file"), allow_pickle=False) as archive:
                return {k: archive[k] for k in archive.files}
        except (ValueError, OSError, EOFError, zipfile.BadZipFile) as err:
            raise GenDataError(f"cannot read the data file '{path}': {err}") from None
    if path.suffix != ".json":
        raise GenDataError(f"'{path}': infer reads a .json object (or an .npz archive) keyed by variable name")
    try:
        data = json.loads(read_text(path, "the data file"))
    except json.JSONDecodeError as err:
        raise GenDataError(f"'{path}' is not valid JSON: {err}") from None
    except RecursionError:
        raise GenDataError(f"'{path}' nests its JSON too deeply") from None
    if not isinstance(data, dict):
        raise GenDataError(f"'{path}' must hold a JSON object keyed by variable name")
    return data


def _jsonable(value):
    """Floats and nested lists, non-finite values as null."""
    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim == 0:
        return float(arr) if np.isfinite(arr) else None
    return [_jsonable(v) for v in arr]


def write_posterior(post, out_dir: str | Path, warned: list[str] | None = None) -> Path:
    """Write ``summary.json``, ``sampler.json``, ``draws.npz``, ``posterior.nc`` and ``trace.png`` of
    ``post`` into ``out_dir`` (``draws.npz`` holds every variable's draws, and ``NAME.probabilities``
    for each discrete latent). ``summary.json``'s ``warnings`` lists ``warned``: what inference
    warned about (convergence, divergences, a flat target...)."""
    out = output_root(out_dir)
    summary = {name: {k: _jsonable(v) for k, v in stats.items()} for name, stats in post.summary().items()}
    summary["divergences"] = {"total": int(post.divergences), "per_chain": post.divergences.per_chain.tolist()}
    summary["warnings"] = list(warned or [])
    buf = io.BytesIO()
    np.savez(buf, **post.samples, **{f"{name}.probabilities": p for name, p in post.probabilities.items()})
    # the large files first and summary.json last: a full disk stops the writing before the small
    # files of an earlier run in the folder are replaced (each file is whole, old or new)
    atomic_write_bytes(out / "draws.npz", buf.getvalue())
    atomic_write_bytes(out / "posterior.nc", post.to_netcdf_bytes())
    trace_plot(post.samples, out / "trace.png")
    atomic_write_text(out / "sampler.json", json.dumps(post.sampler_stats(), indent=2))
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2))
    return out


def posterior_summary(post) -> str:
    """One line on a posterior: chains and draws, divergences, the worst ESS and R-hat, the time."""
    summary = post.summary()
    ess = min(float(np.nanmin(np.atleast_1d(summary[k]["ess_bulk"]))) for k in post.latents)
    rhat = max(float(np.nanmax(np.atleast_1d(summary[k]["r_hat"]))) for k in post.latents)
    seconds = post.compile_seconds + post.sampling_seconds
    lm = post.log_marginal_likelihood
    return (f"{post.num_chains} chains x {post.num_samples} draws: {int(post.divergences)} divergences, "
            f"min ess_bulk {ess:.0f}, max r_hat {rhat:.3f} ({seconds:.1f} s: {post.compile_seconds:.1f} s "
            f"compiling, {post.sampling_seconds:.1f} s sampling)"
            + (f"; log p(data) {lm.value:.6g} ± {lm.se:.2g}" if lm is not None else ""))


def infer_run(model_path: str | Path, data_path: str | Path, out_dir: str | Path, chains: int = 4,
              samples: int = 1000, warmup: int = 1000, seed: int = 0, model_name: str | None = None,
              devices: int | str | None = None, kernel: str = "auto", options: dict | None = None):
    """Load a model, run :func:`gendsl.inference.infer` on a data file, write the results.

    Parameters
    ----------
    kernel, options:
        The kernel and keyword options of :func:`gendsl.inference.infer` (``target_accept``,
        ``max_tree_depth``, ``mass``, ``init``...).
    devices:
        Split the chains across this many devices (or ``"all"``), as ``infer(..., devices=)``;
        ``chains`` must be a multiple of the count. None (the default) runs on one device. The
        draws equal the one-device draws (see ``docs/scaling.md``).

    Returns
    -------
    Posterior
    """

    program = api.compile(api.load(model_path, model=model_name))
    options = dict(options or {}) | ({} if devices is None else {"devices": devices})
    data = read_data(data_path)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        post = program.infer(data, key=jax.random.key(seed), num_chains=chains, num_samples=samples,
                             num_warmup=warmup, kernel=kernel, **options)
    for w in seen:  # shown as they would have been, and kept in summary.json
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    write_posterior(post, out_dir, [str(w.message) for w in seen])
    return post
