"""``truncated(normal(mu, s), low=a, high=b)``: a leaf distribution restricted to an interval.

The density is the base's renormalised on ``[low, high]`` (either bound may be left out), through
numpyro's ``TruncatedDistribution``, which can truncate the continuous leaves listed in
:data:`TRUNCATABLE`. The bounds are expressions over the parents, broadcast with the base's
arguments; a latent truncated variable is moved to unconstrained space through its interval.
"""

from __future__ import annotations

from dataclasses import replace

import jax
import jax.numpy as jnp
import numpyro.distributions as dist

from gendsl.core.signatures import Param, Signature, Spec
from gendsl.core.types import VarType, broadcast_shapes, shape_str
from gendsl.errors import GenRuntimeError, GenSemanticError
from gendsl.mechanisms.base import AbstractMechanism
from gendsl.mechanisms.leaf import Leaf

__all__ = ["Truncated", "TRUNCATABLE", "TRUNCATED_SIGNATURE"]

#: the leaves numpyro's TruncatedDistribution accepts (univariate, with a cdf and icdf)
TRUNCATABLE = ("normal", "cauchy", "student_t", "laplace", "logistic")

TRUNCATED_SIGNATURE = Signature(
    "truncated", "mechanism",
    (Param("base", "distribution"), Param("low", "expr", None), Param("high", "expr", None)),
    "a leaf distribution restricted to [low, high] (either bound may be left out), renormalised")


def _shape(spec: Spec, typing) -> tuple:
    shapes = [typing.distribution_shape(spec["base"])]
    shapes += [typing.shape_of(spec[b]) for b in ("low", "high") if spec[b] is not None]
    try:
        return broadcast_shapes(*shapes)
    except ValueError as err:
        raise GenSemanticError(f"the bounds of truncated(...) do not fit its distribution: {err}", typing.call.span) from None


class Truncated(AbstractMechanism):
    """``x ~ truncated(BASE, low=..., high=...)``: BASE's density renormalised on the interval."""

    name = "truncated"
    signature = TRUNCATED_SIGNATURE
    bases = ("real", "positive", "unit")
    capabilities = frozenset({"distribution"})
    kind = "exact"
    loss_name = "nll"
    has_params = False

    # -- declaration ----------------------------------------------------------------------------
    @classmethod
    def infer_type(cls, name: str, spec: Spec, typing) -> VarType:
        """``real`` of the broadcast shape of the base's draw and the bounds."""
        cls.check_base(spec, typing)
        return VarType("real", _shape(spec, typing))

    @classmethod
    def check_base(cls, spec: Spec, typing) -> None:
        """Refuse a base numpyro cannot truncate, and a truncation without any bound."""
        base = spec["base"]
        where = typing.call.args[0].span if typing.call.args else typing.call.span
        if base.name not in TRUNCATABLE:
            raise GenSemanticError(f"truncated() can restrict {', '.join(TRUNCATABLE)}; got {base.name}(...). "
                                   f"For a positive variable use a positive distribution (half_normal, gamma, ...)",
                                   where)
        if spec["low"] is None and spec["high"] is None:
            raise GenSemanticError("truncated() needs low=, high= or both", typing.call.span)

    @classmethod
    def check_spec(cls, name: str, spec: Spec, vtype: VarType, typing) -> None:
        """The base can be truncated and the declared shape holds one draw."""
        cls.check_base(spec, typing)
        shape = _shape(spec, typing)
        try:
            fits = broadcast_shapes(vtype.shape, shape) == tuple(vtype.shape)
        except ValueError:
            fits = False
        if not fits:
            raise GenSemanticError(f"truncated(...) draws shape {shape_str(shape)} but '{name}' is declared "
                                   f"{shape_str(vtype.shape)}", typing.call.span)

    @classmethod
    def static_cost(cls, spec, vtype, mechanisms) -> int:
        """No network: 0."""
        return 0

    # -- node -----------------------------------------------------------------------------------
    def __init__(self, ctx):
        super().__init__(ctx)
        self.base = Leaf(replace(ctx, spec=ctx.spec["base"]))
        self.sampler_name = "exact draw (inverse cdf)"

    def distribution(self, env: dict) -> dist.Distribution:
        """The truncated numpyro distribution of one example, batch shape the variable's."""
        spec, ev = self.ctx.spec, self.ctx.evaluate
        low, high = (None if spec[b] is None else jnp.asarray(ev(spec[b], env), jnp.result_type(float))
                     for b in ("low", "high"))
        d = dist.TruncatedDistribution(self.base.as_written(env), low=low, high=high)
        return d if d.batch_shape == self.ctx.shape else d.expand(self.ctx.shape)

    def init(self, key):
        return {}

    def log_prob(self, params, x, given):
        return jax.vmap(lambda xi, gi: jnp.sum(self.distribution(gi).log_prob(xi)))(x, given)

    def sample(self, params, key, n, given):
        try:
            return jax.vmap(lambda k, gi: self.distribution(gi).sample(k))(jax.random.split(key, n), given)
        except ImportError as err:  # numpyro's inverse cdf of Student's t needs tensorflow_probability
            raise GenRuntimeError(f"drawing '{self.ctx.name}' from truncated({self.base.row.name}(...)) needs the "
                                  f"inverse cdf of {self.base.row.name}, which numpyro takes from tensorflow_probability "
                                  f"(pip install tensorflow-probability); its density (fit, infer) needs nothing more: "
                                  f"{err}", self.ctx.span) from None

    def support(self, params, given_one):
        return self.distribution(given_one).support
