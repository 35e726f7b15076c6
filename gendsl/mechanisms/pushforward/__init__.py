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

from gendsl.mechanisms.base import register
from gendsl.mechanisms.pushforward.bijection import BIJECTIONS
from gendsl.mechanisms.pushforward import coupling, maf, spline  # noqa: F401  (register the bijections)
from gendsl.mechanisms.pushforward.cnf import CNFPushforward
from gendsl.mechanisms.pushforward.flow import FlowPushforward
from gendsl.mechanisms.pushforward.generator import GeneratorPushforward
from gendsl.mechanisms.pushforward.node import PushforwardNode

__all__ = ["Pushforward", "FAMILIES"]


#: map name -> the node class implementing it
FAMILIES = {"cnf": CNFPushforward, "generator": GeneratorPushforward, **{name: FlowPushforward for name in BIJECTIONS}}

#: the registered mechanism; ``Pushforward(ctx)`` builds the family of ``ctx.spec["map"]``
Pushforward = register("pushforward")(PushforwardNode)
