"""A variable's type -> the numpyro constraint of its support.

Inference moves each latent into its support through ``biject_to`` of this constraint (with the
log-Jacobian), so every type below is sampled in unconstrained space and its draws come back
constrained: ``real<lower=a, upper=b>`` (either bound optional; bounds are expressions),
``ordered``, ``positive_ordered``, ``simplex``, ``sum_to_zero``, ``cholesky_factor_corr``,
``corr_matrix`` and ``cov_matrix``, besides ``real``, ``positive`` and ``unit``.
"""

from __future__ import annotations

from typing import Callable

import jax.numpy as jnp
from numpyro.distributions import constraints

from gendsl.core.types import BASES, VarType

__all__ = ["CONSTRAINTS", "type_constraint"]

#: numpyro constraint name (``BASES``) -> the constraint
CONSTRAINTS = {
    "real": constraints.real,
    "positive": constraints.positive,
    "unit_interval": constraints.unit_interval,
    "ordered_vector": constraints.ordered_vector,
    "positive_ordered_vector": constraints.positive_ordered_vector,
    "simplex": constraints.simplex,
    "zero_sum": constraints.zero_sum(event_dim=1),
    "corr_cholesky": constraints.corr_cholesky,
    "corr_matrix": constraints.corr_matrix,
    "positive_definite": constraints.positive_definite,
}


def type_constraint(vtype: VarType, bound: Callable) -> constraints.Constraint:
    """The support of ``vtype``; ``bound(expr) -> array`` evaluates its bounds (for one example)."""
    def value(expr):
        return jnp.asarray(bound(expr), dtype=jnp.result_type(float))

    if vtype.lower is not None and vtype.upper is not None:
        return constraints.interval(value(vtype.lower), value(vtype.upper))
    if vtype.lower is not None:
        return constraints.greater_than(value(vtype.lower))
    if vtype.upper is not None:
        return constraints.less_than(value(vtype.upper))
    return CONSTRAINTS[BASES[vtype.base][1]]
