"""``pushforward``: x = T(z), z ~ BASE.

``x ~ pushforward(BASE, MAP, given=...)`` dispatches on ``MAP``:

- a bijection (``coupling``, ``spline``, ``maf``; :mod:`.bijection`): exact log-density by the
  change of variables, trained by maximum likelihood (:class:`~.flow.FlowPushforward`);
- ``cnf``: a continuous flow, log-density by the instantaneous change of variables along a
  diffrax ODE solve (kind ``exact`` with the exact trace, ``estimate`` with Hutchinson's),
  trained by maximum likelihood through the ODE or by flow matching (:class:`~.cnf.CNFPushforward`);
- ``generator``: a non-invertible network trained adversarially (WGAN-GP), one-shot sampling,
  no likelihood (:class:`~.generator.GeneratorPushforward`).

``given=`` names enter every network (conditioner, vector field, generator and critic) as one
context vector. Variables of type ``positive`` / ``unit`` get the map's output through ``exp``
/ ``sigmoid`` (numpyro's ``biject_to``), with its log-Jacobian in the density.

A variable as the base
----------------------
``x ~ pushforward(z, MAP)`` makes ``x = T(z)`` a deterministic, invertible reparametrisation of
the variable ``z``, whose own node carries the randomness. Sampling draws ``z`` first (it is a
parent) and sets ``x = T(z)``. The joint density of a pair lives on the graph of ``T``: with
respect to Lebesgue measure on ``x``,

    p(z, x) = p_Z(z) |det J_T(z)|^{-1}   if x = T(z),   0 otherwise,

so the node's ``log_prob`` is the change-of-variables correction ``log|det J_{T^{-1}}(x)|`` at
``T^{-1}(x)`` when the supplied ``z`` equals ``T^{-1}(x)`` (to ``REPARAM_TOLERANCE`` relative
error) and ``-inf`` otherwise; the compiler's sum over nodes then gives ``log p_Z(z) + log|det
J_{T^{-1}}(x)| = log p_X(x)`` on consistent pairs, exactly the density of ``x`` under the
composed model. Such pairs carry no likelihood to fit a bijection by, so ``fit`` refuses to train
a bijective map on a variable base (train it with a distribution base and reuse its parameters);
``cnf(train="flow_matching")`` and ``generator`` train on the supplied base values as their
noise (paired flow matching, adversarial training).
"""

from __future__ import annotations

from gendsl.core.signatures import Param, Signature, Spec
from gendsl.core.types import VarType, shape_str
from gendsl.errors import GenSemanticError
from gendsl.mechanisms.base import type_size
from gendsl.mechanisms.pushforward.bijections import BIJECTIONS
from gendsl.mechanisms.pushforward.cnf import CNFPushforward
from gendsl.mechanisms.pushforward.flow import FlowPushforward
from gendsl.mechanisms.pushforward.generator import GeneratorPushforward
from gendsl.mechanisms.pushforward.node import PushforwardNode

__all__ = ["Pushforward", "FAMILIES"]

#: ``pushforward(...)`` in the language
PUSHFORWARD_SIGNATURE = Signature("pushforward", "mechanism", (Param("base", "distribution|name"), Param("map", "map"), Param("given", "names", ())),
              "x = T(z), z ~ base")


#: map name -> the node class implementing it
FAMILIES = {"cnf": CNFPushforward, "generator": GeneratorPushforward, **{name: FlowPushforward for name in BIJECTIONS}}


class Pushforward(PushforwardNode):
    """The ``pushforward`` declaration: what the check, the advisor and ``describe`` ask of it,
    and :meth:`build`, which makes the node of the family implementing the map."""

    name = "pushforward"
    signature = PUSHFORWARD_SIGNATURE
    bases = ("real", "positive", "unit")

    @classmethod
    def build(cls, ctx) -> PushforwardNode:
        """The node of the family of ``ctx.spec["map"]`` (:data:`FAMILIES`)."""
        return FAMILIES[ctx.spec["map"].name](ctx)

    @classmethod
    def static_kind(cls, spec) -> str:
        return FAMILIES[spec["map"].name].map_kind(spec)

    @classmethod
    def static_cost(cls, spec, vtype, mechanisms) -> int:
        return FAMILIES[spec["map"].name].map_cost(spec, vtype)

    @classmethod
    def infer_type(cls, name: str, spec: Spec, typing) -> VarType | None:
        """The base's shape: a variable's, or one draw of the base distribution."""
        base = spec["base"]
        if isinstance(base, str):
            return VarType("real", typing.types[base].shape)
        shape = typing.distribution_shape(base) if base.category == "distribution" else ()
        return VarType("real", shape) if shape else None

    @classmethod
    def check_spec(cls, name: str, spec: Spec, vtype: VarType, typing) -> None:
        """A variable base must have the variable's shape; the map's own rules (its networks' kinds)."""
        FAMILIES[spec["map"].name].check_map(name, spec["map"], typing.call.span, vtype.shape)
        base = spec["base"]
        if isinstance(base, str) and typing.types[base].shape != vtype.shape:
            raise GenSemanticError(f"the base '{base}' of '{name}' has shape {shape_str(typing.types[base].shape)} "
                                   f"but '{name}' has shape {shape_str(vtype.shape)}", typing.call.span)

    @classmethod
    def choices(cls, vtype):
        """Bijective flows (exact), a continuous flow (estimate) and a generator (no likelihood),
        for continuous variables (real, positive and unit through the link)."""
        if vtype.base not in ("real", "positive", "unit"):
            return []
        d = type_size(vtype)
        base = "pushforward(normal(0, 1), "
        return [
            cls.choice(base + "coupling(layers=8, hidden=[64, 64]))",
                       "affine coupling flow: one pass each way"),
            cls.choice(base + "spline(layers=4, bins=8, hidden=[64, 64]))",
                       "spline coupling flow: one pass each way, more flexible per layer"),
            cls.choice(base + "maf(layers=5, hidden=[64, 64]))",
                       f"masked autoregressive flow: density in one pass, sampling takes d = {d} passes"),
            cls.choice(base + 'cnf(net=mlp(hidden=[64, 64]), trace="hutchinson", steps=16))',
                       "continuous flow: an ODE solve (tsit5, 6 evaluations a step); trace=\"exact\" makes the "
                       f"likelihood exact at {d} Jacobian passes a step"),
            cls.choice(base + "generator(net=mlp(hidden=[128, 128]), critic=mlp(hidden=[128, 128])))",
                       "implicit generator trained adversarially: one-shot sampling"),
        ]

