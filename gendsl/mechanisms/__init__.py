"""The mechanisms: one package (or module) each, a declaration and a node.

Nothing here registers itself: :mod:`gendsl.registry` lists every mechanism by name, and the
compiler finds them only there.
"""

from gendsl.mechanisms.base import KINDS, AbstractMechanism, Choice, NodeContext, weakest_kind

__all__ = ["KINDS", "AbstractMechanism", "Choice", "NodeContext", "weakest_kind"]
