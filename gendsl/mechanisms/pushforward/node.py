"""What every pushforward node shares: its base, its context, and the link to its support.

``x ~ pushforward(BASE, MAP, given=...)`` with ``x`` of shape ``S`` (``D`` elements). The maps
work on flat vectors: ``z`` ``(D,)`` from the base, ``y = T(z | context)`` ``(D,)`` real, and
``x = link(y)`` reshaped to ``S``, where ``link`` is numpyro's bijection onto the variable's
support (identity for ``real``, ``exp`` for ``positive``, ``sigmoid`` for ``unit``), with its
log-Jacobian counted in the density.

BASE is either a leaf distribution (``normal(0, 1)``; its arguments may read parents), broadcast
to the variable's shape (or to the latent shape of a generator), or the name of another variable
(see :mod:`gendsl.mechanisms.pushforward` for what a variable base means).
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpyro.distributions.constraints as constraints
from numpyro.distributions.transforms import biject_to

from gendsl.core.ast import names_in
from gendsl.core.types import BASES, VarType
from gendsl.errors import GenSemanticError
from gendsl.mechanisms.base import AbstractMechanism, context_size, context_vector, split_module
from gendsl.mechanisms.distributions import DISTRIBUTIONS
from gendsl.mechanisms.leaf import Leaf

__all__ = ["PushforwardNode", "REPARAM_TOLERANCE", "static_part", "initialise"]

#: a variable base's value ``z`` and ``T^{-1}(x)`` must agree to ``tol * (1 + |z|)`` elementwise
REPARAM_TOLERANCE = 1e-2


def static_part(build: Callable, args: tuple):
    """The static rest of ``split_module(build(*args, key=key))``, from shapes alone (no compile).

    ``build`` must make a module whose arrays are all trained parameters (no integer arrays).
    """
    shapes = eqx.filter_eval_shape(lambda key: build(*args, key=key), jax.random.key(0))
    return eqx.partition(shapes, lambda leaf: isinstance(leaf, jax.ShapeDtypeStruct))[1]


@eqx.filter_jit
def initialise(build: Callable, args: tuple, key: jax.Array):
    """The trained arrays of ``build(*args, key=key)``, compiled once per ``(build, args)``.

    ``build`` is a module-level function and ``args`` hashable, so every node of one
    architecture shares the compiled initialiser (built eagerly, every random op would be
    compiled on its own, which costs seconds).
    """
    return split_module(build(*args, key=key))[0]


class PushforwardNode(AbstractMechanism):
    """Base of the pushforward families (bijective flows, continuous flows, generators).

    The registered ``pushforward`` declaration
    (:class:`~gendsl.mechanisms.pushforward.Pushforward`) builds the family that implements the
    map (its ``FAMILIES`` table).

    Attributes
    ----------
    dim:
        Elements of one draw, ``D``.
    cond_dim:
        Width of the context vector of the ``given=`` variables (0 without).
    base_name:
        The base variable's name, or None for a distribution base.
    """

    name = "pushforward"

    def __init__(self, ctx, latent_shape: tuple[int, ...] | None = None):
        super().__init__(ctx)
        spec = ctx.spec
        self.map_spec = spec["map"]
        self.context_names = tuple(spec["given"] or ())
        self.cond_dim = context_size(ctx.parents, self.context_names)
        self.dim = ctx.size
        base = spec["base"]
        self.base_name = base if isinstance(base, str) else None
        self.base_leaf = None
        self._base_constant = False  # a base reading no parent is drawn for the whole batch at once
        if self.base_name is None:
            shape = ctx.shape if latent_shape is None else latent_shape
            self.base_leaf = self._base_leaf(base, shape)
            read = {name.id for value in base.options.values() for name in names_in(value)}
            self._base_constant = not (read & set(ctx.parents))
        elif ctx.parents[base].discrete:
            raise GenSemanticError(f"the base '{base}' of '{ctx.name}' is {ctx.parents[base]}; "
                                   "a pushforward needs a real-valued base", ctx.span)
        support = BASES[ctx.type.base][1]
        self.constraint = {"real": constraints.real, "positive": constraints.positive,
                           "unit_interval": constraints.unit_interval}[support]
        self.link = None if support == "real" else biject_to(self.constraint)

    def _base_leaf(self, base, shape) -> Leaf:
        signature = DISTRIBUTIONS[base.name].signature
        if signature.support == "int":
            raise GenSemanticError(f"the base of '{self.ctx.name}' must be a continuous distribution, "
                                   f"but {base.name}() draws integers; use e.g. normal(0, 1)", self.ctx.span)
        return Leaf(dataclasses.replace(self.ctx, spec=base, type=VarType("real", tuple(shape))))

    @property
    def base_size(self) -> int:
        """Elements of one base draw."""
        if self.base_leaf is not None:
            return self.base_leaf.ctx.size
        return self.dim

    # -- pieces --------------------------------------------------------------------------------
    def context(self, given: dict) -> jax.Array | None:
        """The ``(n, C)`` context of the ``given=`` variables, or None."""
        return context_vector(given, self.ctx.parents, self.context_names)

    def base_sample(self, key: jax.Array, n: int, given: dict) -> jax.Array:
        """Base draws, flat ``(n, base_size)``: from the distribution, or the base variable's values."""
        if self.base_leaf is None:
            return given[self.base_name].reshape(n, -1).astype(jnp.result_type(float))
        if self._base_constant:
            return self.base_leaf.distribution({}).sample(key, (n,)).reshape(n, -1)
        return self.base_leaf.sample({}, key, n, given).reshape(n, -1)

    def base_log_prob(self, z: jax.Array, given: dict) -> jax.Array:
        """Log-density ``(n,)`` of flat base points ``z`` ``(n, base_size)``.

        For a variable base its own node counts its density; here ``0`` where the supplied base
        value equals ``z = T^{-1}(x)`` (to :data:`REPARAM_TOLERANCE`) and ``-inf`` elsewhere, since
        the pair ``(z, x)`` lies on the graph of ``T`` or nowhere.
        """
        n = z.shape[0]
        if self.base_leaf is not None:
            return self.base_leaf.log_prob({}, z.reshape(n, *self.base_leaf.ctx.shape), given)
        supplied = given[self.base_name].reshape(n, -1)
        close = jnp.all(jnp.abs(supplied - z) <= REPARAM_TOLERANCE * (1.0 + jnp.abs(supplied)), axis=-1)
        return jnp.where(close, 0.0, -jnp.inf)

    def to_data(self, y: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Flat reals ``(n, D)`` -> draws ``(n, *shape)`` and ``log|det dx/dy|`` ``(n,)``."""
        n = y.shape[0]
        if self.link is None:
            return y.reshape(n, *self.ctx.shape), jnp.zeros(n, y.dtype)
        x = self.link(y)
        return x.reshape(n, *self.ctx.shape), jnp.sum(self.link.log_abs_det_jacobian(y, x), axis=-1)

    def from_data(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Draws ``(n, *shape)`` -> flat reals ``(n, D)`` and ``log|det dy/dx|`` ``(n,)``."""
        n = x.shape[0]
        x = x.reshape(n, -1).astype(jnp.result_type(float))
        if self.link is None:
            return x, jnp.zeros(n, x.dtype)
        y = self.link.inv(x)
        return y, -jnp.sum(self.link.log_abs_det_jacobian(y, x), axis=-1)

    def support(self, params, given_one):
        return self.constraint

    # -- declared properties of this family ----------------------------------------------------
    @classmethod
    def check_map(cls, name: str, map_spec, span, shape: tuple) -> None:
        """Raise :class:`~gendsl.errors.GenSemanticError` if the map's options cannot model ``name``
        of event shape ``shape`` (called by the declaration's ``check_spec``, so check and compile
        agree). Default: none."""

    @classmethod
    def map_kind(cls, spec) -> str:
        """Likelihood kind of this family for ``spec``. Default: the class's :attr:`kind`."""
        return cls.kind

    @classmethod
    def map_cost(cls, spec, vtype) -> int:
        """Network evaluations per sample of this family for ``spec``. Default: 1."""
        return 1

    def describe(self) -> dict[str, str]:
        row = super().describe()
        row["mechanism"] = f"pushforward({self.map_spec.name})"
        return row
