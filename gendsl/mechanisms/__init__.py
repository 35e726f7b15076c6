"""Mechanisms, registered by name. Every module of this package is imported on first use of
the registry, so a new mechanism file is found without touching any other file."""

from __future__ import annotations

import importlib
import pkgutil

from gendsl.mechanisms.base import AbstractMechanism, NodeContext, lookup, register, registered

__all__ = ["AbstractMechanism", "NodeContext", "lookup", "register", "registered", "load_all"]


def load_all() -> None:
    """Import every mechanism module (each registers itself)."""
    for info in pkgutil.walk_packages(__path__, prefix=__name__ + "."):
        importlib.import_module(info.name)


load_all()
