"""The text front end: ``.gen`` source -> checked models."""

from gendsl.lang.frontend import load, parse, parse_all

__all__ = ["load", "parse", "parse_all"]
