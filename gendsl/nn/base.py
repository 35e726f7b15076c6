"""What the network table holds for each network: its signature, the shapes it maps and, for a
vector network, how to build it; and the one switch between inference and training.

A network module as built is in **inference** mode: deterministic, as sampling, densities and
validation use it. :func:`training` gives its stochastic layers (:class:`gendsl.nn.layers.Dropout`)
keys of their own for one training step; a mechanism's training objective applies it to the
module it evaluates, with a key split from the step's.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import equinox as eqx
import jax

from gendsl.core.signatures import Signature
from gendsl.nn.layers import Dropout

__all__ = ["Network", "KINDS", "training"]

#: what a network computes, which decides the mechanisms that can use it:
#: ``vector`` maps one flat example (and a context vector) to a vector; ``autoregressive`` maps a
#: sequence to per-element outputs that depend only on earlier elements
KINDS = ("vector", "autoregressive")


class Network(NamedTuple):
    """An entry of :data:`gendsl.nn.NETWORKS`.

    Attributes
    ----------
    signature:
        The network's call in the language (``mlp(hidden=..., ...)``).
    kind:
        One of :data:`KINDS`.
    build:
        For a ``vector`` network: ``build(spec, in_size, out_size, *, key, zero_last=False,
        input_gain=None, event_shape=None)`` makes an equinox module mapping one example
        ``(in_size,)`` to ``(out_size,)`` (mechanisms ``vmap`` it) from a resolved spec of
        :attr:`signature`. The input is the variable's event flattened (row-major), followed by
        whatever the mechanism appends (time features, context); ``event_shape`` is that event's
        shape, which an image network reads as ``(C, H, W)`` (:mod:`gendsl.nn.images`) and an MLP
        ignores. ``zero_last`` starts its output at zero (identity-at-init flows, residual
        energies); ``input_gain`` (``(in_size,)``, optional) scales how strongly each input moves
        the initial network (for an MLP: the first layer's weight columns). None for the other
        kinds, whose mechanisms build them with their own shapes. The module is built in
        inference mode (:func:`training` switches it for a step).
    refuse:
        For a ``vector`` network that cannot serve every variable: ``refuse(spec, event_shape) ->
        str | None`` says why it cannot model an event of shape ``event_shape`` with the options of
        ``spec`` (None: it can). The shape's sizes may be unbound names at check time; only its
        rank is sure. None: every shape and option set is served.
    """

    signature: Signature
    kind: str
    build: Callable | None = None
    refuse: Callable | None = None


def _is_dropout(node) -> bool:
    return isinstance(node, Dropout)


def training(module: eqx.Module, key: jax.Array) -> eqx.Module:
    """``module`` in training mode for one step: each of its :class:`~gendsl.nn.layers.Dropout`
    layers holds its own key split from ``key`` (a module without one is returned as it is)."""
    layers = [leaf for leaf in jax.tree_util.tree_leaves(module, is_leaf=_is_dropout) if _is_dropout(leaf)]
    if not layers:
        return module
    keys = iter(jax.random.split(key, len(layers)))
    return jax.tree_util.tree_map(lambda n: Dropout(n.rate, next(keys)) if _is_dropout(n) else n, module,
                                  is_leaf=_is_dropout)
