"""Named tables and the catalog the pure passes are handed: no JAX, nothing registered here.

A :class:`Table` is an explicit, read-only mapping from a language name to an entry (a
mechanism, a network, a kernel, a distribution row...), whose lookup error names what was asked
for, suggests a close name and lists the known ones. The tables themselves are written in the
layer that owns their entries and assembled in :mod:`gendsl.registry`.

A :class:`Catalog` is what the semantic check needs to know about the world, injected rather
than imported (the check sits below every implementation): the signature of every callable name,
the declaration of every mechanism (its type rule and option checks), and a
:class:`SourceResolver` for ``prior("RUN")`` sources (which live in run folders, read by the
application layer).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Iterator, Mapping, Protocol

from gendsl.core.signatures import Signature
from gendsl.core.types import VarType
from gendsl.errors import GenSemanticError, Span, did_you_mean

__all__ = ["Table", "SourceResolver", "Catalog"]


class Table(Mapping[str, Any]):
    """A read-only table of named entries.

    Parameters
    ----------
    what:
        The kind of entry, for messages ("network", "MCMC kernel", ...).
    entries:
        Name -> entry, in the order they should be listed.
    """

    def __init__(self, what: str, entries: Mapping[str, Any]):
        self.what = what
        self._entries = dict(entries)

    def __getitem__(self, name: str) -> Any:
        return self._entries[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def lookup(self, name: str, span: Span | None = None) -> Any:
        """The entry ``name``, or a :class:`GenSemanticError` listing the known names."""
        try:
            return self._entries[name]
        except KeyError:
            raise GenSemanticError(f"unknown {self.what} '{name}'{did_you_mean(name, self._entries)} "
                                   f"(known: {', '.join(self._entries)})", span) from None

    def __repr__(self) -> str:
        return f"Table({self.what!r}, [{', '.join(self._entries)}])"


class SourceResolver(Protocol):
    """Where ``prior("RUN")`` sources come from (implemented by the application layer)."""

    def anchor(self, source: Any, file: str | None) -> Any:
        """``source`` made independent of the working directory (an absolute run folder)."""

    def type_of(self, source: Any, node: str | None, span: Span | None) -> VarType:
        """The (bound) type of the variable the source stands for."""


@dataclass(frozen=True)
class Catalog:
    """Everything the semantic check is told about the implementations.

    Attributes
    ----------
    signatures:
        Every callable name of the language (distributions, mechanisms, options).
    mechanisms:
        Mechanism name -> its declaration: an object with the class methods of
        :class:`~gendsl.mechanisms.base.AbstractMechanism` that the check calls (``bases``,
        ``self_reference``, ``infer_type``, ``check_spec``, ``anchor``).
    sources:
        Resolver of ``prior(...)`` sources; None refuses them with a clear message.
    """

    signatures: Mapping[str, Signature]
    mechanisms: Mapping[str, Any] = field(default_factory=dict)
    sources: SourceResolver | None = None

    def with_sources(self, sources: SourceResolver | None) -> "Catalog":
        """This catalog with another source resolver."""
        return replace(self, sources=sources)

    def by_category(self, category: str) -> dict[str, Signature]:
        """Every signature of one category, by name."""
        return {n: s for n, s in self.signatures.items() if s.category == category}
