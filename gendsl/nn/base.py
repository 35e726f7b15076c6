"""What the network table holds for each network: its signature and the shapes it maps."""

from __future__ import annotations

from typing import NamedTuple

from gendsl.core.signatures import Signature

__all__ = ["Network", "KINDS"]

#: what a network computes, which decides the mechanisms that can use it:
#: ``vector`` maps one flat example (and a context vector) to a vector; ``autoregressive`` maps a
#: sequence to per-element outputs that depend only on earlier elements
KINDS = ("vector", "autoregressive")


class Network(NamedTuple):
    """An entry of :data:`gendsl.nn.NETWORKS`."""

    signature: Signature
    kind: str
