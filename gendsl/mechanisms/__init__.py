"""Mechanisms, registered by name. Every module of this package is imported on first use of
the registry (:func:`~gendsl.mechanisms.base.lookup`, :func:`~gendsl.mechanisms.base.registered`),
so a new mechanism file is found without touching any other file, and importing gendsl starts
no JAX backend (``jax.distributed.initialize`` can still run first)."""

from __future__ import annotations

from gendsl.mechanisms.base import AbstractMechanism, NodeContext, load_all, lookup, register, registered

__all__ = ["AbstractMechanism", "NodeContext", "lookup", "register", "registered", "load_all"]
