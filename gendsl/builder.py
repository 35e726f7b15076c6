"""The Python builder API (re-exported from :mod:`gendsl.ir.builder`)."""

from gendsl.ir.builder import *  # noqa: F401,F403
from gendsl.ir.builder import __all__  # noqa: F401
