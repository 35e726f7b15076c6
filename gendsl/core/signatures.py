"""What a callable name of a ``.gen`` file accepts: pure data, no JAX.

Calls fall in categories: ``distribution`` (leaf right-hand sides), ``mechanism`` (the four
mechanisms and ``prior``), and option categories nested inside mechanisms (``network``,
``map``, ``process``, ``sampler``, ``kernel``, ``objective``). The semantic checks resolve a
call against its :class:`Signature` into a :class:`Spec` (name + validated options), so an
implementation receives clean Python values and never re-validates.

Each signature is written beside its implementation (a network's in its file, a kernel's in the
kernel table...); :mod:`gendsl.registry` gathers them into the language's table.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["REQUIRED", "Param", "Signature", "Spec", "ACTIVATION", "default_spec", "learned_spec", "LAYER_LIMIT",
           "WIDTH_LIMIT", "STEP_LIMIT"]


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Any = _Required()

#: Option kinds: "int", "number", "str", "bool", "ints" (list of ints), "names" (one variable
#: name or a list of them), "expr" (an expression over variables), "int_or_str",
#: "<category>" (a nested call of that category), "<category>|name" (a call or a variable),
#: "expr|network" (an energy: expression or network).


@dataclass(frozen=True)
class Param:
    name: str
    kind: str
    default: Any = REQUIRED
    choices: tuple = ()
    doc: str = ""
    #: the largest value an integer option (or each size of an ``ints`` one) may take: a small
    #: file must not ask for a network or a loop that cannot fit in memory or time
    limit: int | None = None
    #: the option only changes how draws are made (a sampler, a guidance scale), not what is
    #: learned: it may change at sample time and is not part of the parameters' fingerprint
    sampling: bool = False


@dataclass(frozen=True)
class Signature:
    """A callable name: its category and parameters (positional in the order given)."""

    name: str
    category: str
    params: tuple[Param, ...] = ()
    doc: str = ""
    support: str | None = None  # distributions: base type of a draw ("real", "positive", ...)
    event: str = "broadcast"  # distributions: how the draw's shape follows the arguments

    def param(self, name: str) -> Param | None:
        for p in self.params:
            if p.name == name:
                return p
        return None


@dataclass(frozen=True)
class Spec:
    """A resolved call: its name, category and every option with its default filled in."""

    name: str
    category: str
    options: dict = field(default_factory=dict)

    def __getitem__(self, key: str):
        return self.options[key]

    def get(self, key: str, default=None):
        return self.options.get(key, default)

    def __hash__(self) -> int:
        return hash((self.name, self.category, repr(sorted(self.options.items(), key=lambda kv: kv[0]))))


#: the ``activation=`` option every network and map takes
ACTIVATION = ("silu", "relu", "tanh", "gelu", "elu", "softplus")


#: default limits of integer options: layers of a stack, widths of a layer, steps of a loop
LAYER_LIMIT, WIDTH_LIMIT, STEP_LIMIT = 256, 16384, 10**6


def learned_spec(spec: Spec, signatures) -> Spec:
    """``spec`` without its sampling-time options (:attr:`Param.sampling`), nested specs too:
    what trained parameters were trained for. ``signatures`` maps names to :class:`Signature`."""
    signature = signatures.get(spec.name)
    sampling = {p.name for p in signature.params if p.sampling} if signature is not None else set()
    return Spec(spec.name, spec.category, {k: learned_spec(v, signatures) if isinstance(v, Spec) else v
                                           for k, v in spec.options.items() if k not in sampling})


def default_spec(signature: Signature) -> Spec:
    """The resolved spec of ``name()`` with every default (e.g. ``ode()``)."""
    return Spec(signature.name, signature.category, {p.name: p.default for p in signature.params})
