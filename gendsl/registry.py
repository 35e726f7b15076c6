"""The registry: every mechanism, network, map, process, sampler, MCMC kernel, objective and
distribution the language names, gathered in one place.

Each table is written once, beside what it lists, one line an entry: the mechanisms here; the
networks in :mod:`gendsl.nn`; the bijective maps in :mod:`gendsl.mechanisms.pushforward.bijections`;
the processes and samplers of ``evolve`` in its ``processes`` and ``samplers`` modules; the
kernels in :mod:`gendsl.numerics.kernels` and beside them tempered SMC, annealed Langevin and parallel
tempering in :mod:`gendsl.numerics.smc`, ``annealed`` and ``tempering``;
the objectives of ``energy`` in its ``objectives``; the distributions in
:mod:`gendsl.mechanisms.distributions`. Nothing registers itself: this module
imports the tables and makes the language's signature table and the :class:`Catalog` the
semantic check is handed. The compiler finds mechanisms only through :data:`MECHANISMS`.
"""

from __future__ import annotations

from gendsl.core.catalog import Catalog, Table
from gendsl.core.signatures import Signature
from gendsl.mechanisms.distributions import DISTRIBUTIONS, logpdf
from gendsl.mechanisms.energy import Energy
from gendsl.mechanisms.energy.objectives import OBJECTIVES
from gendsl.mechanisms.evolve import Evolve
from gendsl.mechanisms.evolve.distilled import Distilled
from gendsl.mechanisms.evolve.processes import PROCESS_SIGNATURES, PROCESSES
from gendsl.mechanisms.evolve.samplers import SAMPLERS
from gendsl.mechanisms.factorize import Factorize
from gendsl.mechanisms.hmm import HMM
from gendsl.mechanisms.leaf import Leaf
from gendsl.mechanisms.prior import Prior
from gendsl.mechanisms.pushforward import FAMILIES, Pushforward
from gendsl.mechanisms.pushforward.bijections import BIJECTIONS
from gendsl.mechanisms.pushforward.cnf import CNF_SIGNATURE
from gendsl.mechanisms.pushforward.generator import GENERATOR_SIGNATURE
from gendsl.mechanisms.truncated import Truncated
from gendsl.nn import NETWORKS
from gendsl.numerics.annealed import ANNEALED_SAMPLERS
from gendsl.numerics.kernels import KERNELS
from gendsl.numerics.smc import SMC_SAMPLERS
from gendsl.numerics.tempering import TEMPERING_SAMPLERS

__all__ = ["MECHANISMS", "NETWORKS", "BIJECTIONS", "MAPS", "FAMILIES", "PROCESSES", "SAMPLERS", "KERNELS",
           "SMC_SAMPLERS", "ANNEALED_SAMPLERS", "TEMPERING_SAMPLERS", "OBJECTIVES", "DISTRIBUTIONS", "FORMS", "SIGNATURES", "CATALOG"]

#: mechanism name -> its class (declaration and node); one line each
MECHANISMS = Table("mechanism", {
    "leaf": Leaf,
    "factorize": Factorize,
    "pushforward": Pushforward,
    "evolve": Evolve,
    "distilled": Distilled,
    "energy": Energy,
    "prior": Prior,
    "truncated": Truncated,
    "hmm": HMM,
})

#: calls of the expression language implemented above the numerics layer (handed the call unevaluated)
FORMS = Table("function", {"logpdf": logpdf})

#: the maps of ``pushforward``: the bijective ones and the two other families
MAPS = Table("map", {**{name: b.signature for name, b in BIJECTIONS.items()},
                     "cnf": CNF_SIGNATURE, "generator": GENERATOR_SIGNATURE})


def _signatures() -> dict[str, Signature]:
    tables = [
        {name: row.signature for name, row in DISTRIBUTIONS.items()},
        {name: m.signature for name, m in MECHANISMS.items() if m.signature is not None},
        {name: n.signature for name, n in NETWORKS.items()},
        dict(MAPS), dict(PROCESS_SIGNATURES), dict(SAMPLERS), {n: k.signature for n, k in KERNELS.items()},
        dict(SMC_SAMPLERS), dict(ANNEALED_SAMPLERS), dict(TEMPERING_SAMPLERS), dict(OBJECTIVES),
    ]
    out: dict[str, Signature] = {}
    for table in tables:
        for name, signature in table.items():
            if name in out:
                raise ValueError(f"the name '{name}' is registered twice")  # a registry bug, caught by the tests
            out[name] = signature
    return out


#: every callable name of the language -> its signature
SIGNATURES = Table("name", _signatures())

#: what the semantic check is told (``gendsl.api`` adds the run-folder source resolver)
CATALOG = Catalog(SIGNATURES, MECHANISMS)
