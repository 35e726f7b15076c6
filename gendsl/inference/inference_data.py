"""A posterior in ArviZ's InferenceData layout, as an ``arviz.InferenceData`` or a netCDF file.

The groups and names are ArviZ's (and so Stan's, as ArviZ writes CmdStan's): ``posterior`` (every
latent, tracked and ``generated NAME = ...`` quantity), ``posterior_predictive`` (the ``generated
NAME ~ ...`` draws), ``sample_stats`` (``diverging``, ``tree_depth``, ``n_steps``,
``acceptance_rate``, ``energy``, ``lp``, ``step_size``), ``log_likelihood`` (pointwise, for
``az.loo`` and ``az.waic``), ``observed_data`` and ``constant_data``. Every variable of a draw
group has the dimensions ``(chain, draw, NAME_dim_0, ...)``.

:func:`netcdf_bytes` writes the file with h5netcdf directly, without importing ArviZ or xarray
(which take seconds to import); ``arviz.from_netcdf`` reads it back.
"""

from __future__ import annotations

import io
from typing import Mapping

import numpy as np

from gendsl.errors import GenRuntimeError

__all__ = ["DRAW_GROUPS", "groups", "to_arviz", "netcdf_bytes"]

#: the groups whose variables have a chain and a draw axis
DRAW_GROUPS = ("posterior", "posterior_predictive", "sample_stats", "log_likelihood")
#: names ArviZ reserves for dimensions: a variable so named is stored with a trailing underscore
_RESERVED = ("chain", "draw")


def _name(name: str) -> str:
    return f"{name}_" if name in _RESERVED else name


def groups(post) -> dict[str, dict[str, np.ndarray]]:
    """Group -> variable name -> array: the draw groups ``(chains, draws, ...)`` and the data groups.

    ``post`` is a :class:`~gendsl.inference.posterior.Posterior`; its pointwise log-likelihood is
    computed here if it was not yet.
    """
    chains, draws = post.tree_depth.shape
    stats = {"diverging": post.diverging, "tree_depth": post.tree_depth, "n_steps": post.num_steps,
             "acceptance_rate": post.acceptance_rate,
             "step_size": np.broadcast_to(post.step_size[:, None], (chains, draws))}
    if post.energy is not None:
        stats["energy"] = post.energy
    if post.lp is not None:
        stats["lp"] = post.lp
    predictive = {k: v for k, v in post.samples.items() if k in post.predictive}
    out = {"posterior": {k: v for k, v in post.samples.items() if k not in post.predictive},
           "posterior_predictive": predictive, "sample_stats": stats, "log_likelihood": post.log_likelihood(),
           "observed_data": dict(post.observed_data), "constant_data": dict(post.constant_data)}
    return {g: {_name(k): np.asarray(v) for k, v in vs.items()} for g, vs in out.items() if vs}


def _dims(group: str, name: str, array: np.ndarray) -> list[str]:
    lead = ["chain", "draw"] if group in DRAW_GROUPS else []
    return lead + [f"{name}_dim_{k}" for k in range(array.ndim - len(lead))]


def to_arviz(post):
    """``post`` as an ``arviz.InferenceData`` (needs ArviZ: ``pip install arviz``)."""
    try:
        import arviz as az
    except ImportError:
        raise GenRuntimeError("to_arviz() needs ArviZ: pip install arviz (or pip install gendsl[arviz])") from None
    parts = groups(post)
    dims = {name: _dims(g, name, a)[2 if g in DRAW_GROUPS else 0:] for g, vs in parts.items() for name, a in vs.items()}
    return az.from_dict(**parts, dims=dims, attrs={"inference_library": "gendsl", "sampler": post.kernel})


def _write_group(group, name: str, variables: Mapping[str, np.ndarray]) -> None:
    sizes: dict[str, int] = {}
    for var, array in variables.items():
        sizes.update(zip(_dims(name, var, array), array.shape))
    group.dimensions = sizes
    for dim in ("chain", "draw"):
        if dim in sizes:
            group.create_variable(dim, (dim,), data=np.arange(sizes[dim]))
    for var, array in variables.items():
        boolean = array.dtype == bool
        # netCDF has no boolean type: int8 marked as xarray marks it, which reads it back as bool
        v = group.create_variable(var, tuple(_dims(name, var, array)), data=array.astype(np.int8) if boolean else array)
        if boolean:
            v.attrs["dtype"] = "bool"


def netcdf_bytes(post) -> bytes:
    """The contents of a netCDF-4 file of :func:`groups` that ``arviz.from_netcdf`` reads."""
    import h5netcdf  # imported here: h5py's start-up is paid only when a file is written

    buf = io.BytesIO()
    with h5netcdf.File(buf, "w") as f:
        f.attrs["inference_library"] = "gendsl"
        for name, variables in groups(post).items():
            group = f.create_group(name)
            group.attrs["inference_library"] = "gendsl"
            _write_group(group, name, variables)
    return buf.getvalue()
