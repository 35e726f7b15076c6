"""gendsl: declare a generative model as a graph of variables, each made by one mechanism
(factorize, pushforward, evolve, energy) or a leaf distribution, and compile it to JAX."""

from gendsl.advisor import advise
from gendsl.api import compile, load, parse, parse_all
from gendsl.builder import prior
from gendsl.distill import distill
from gendsl.errors import GenDataError, GenError, GenRuntimeError, GenSemanticError, GenSyntaxError
from gendsl.numerics import compile_cache
from gendsl.program import Program
from gendsl.sampling_options import with_sampling

__all__ = [
    "advise",
    "load",
    "parse",
    "parse_all",
    "compile",
    "Program",
    "prior",
    "distill",
    "with_sampling",
    "GenError",
    "GenSyntaxError",
    "GenSemanticError",
    "GenDataError",
    "GenRuntimeError",
]
__version__ = "0.1.0"

compile_cache.enable_default()  # JAX's persistent compilation cache (GENDSL_COMPILE_CACHE=0: off)
