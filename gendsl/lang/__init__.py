"""The text front end: ``.gen`` source -> checked models (no JAX)."""

from gendsl.lang.frontend import load, parse, parse_all, read_text

__all__ = ["load", "parse", "parse_all", "read_text"]
