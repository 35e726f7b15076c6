"""Lowering of the language's expressions to JAX."""
