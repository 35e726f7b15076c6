"""Networks (equinox modules), and the network table: one line each.

A new network is one file (the module, its ``*_SIGNATURE`` and ``NETWORK`` entry) plus one line
here; every mechanism that accepts its kind (:data:`gendsl.nn.base.KINDS`) can then use it. A
``vector`` network's entry has a ``build``: mechanisms make it through ``NETWORKS[name].build``.
"""

from gendsl.core.catalog import Table
from gendsl.nn import conv, made, mlp, transformer, unet
from gendsl.nn.base import KINDS, Network

__all__ = ["NETWORKS", "Network", "KINDS", "DEFAULT_VECTOR_NETWORK"]

#: network name -> :class:`~gendsl.nn.base.Network`
NETWORKS = Table("network", {
    "mlp": mlp.NETWORK,
    "made": made.NETWORK,
    "transformer": transformer.NETWORK,
    "unet": unet.NETWORK,
    "conv": conv.NETWORK,
})

#: the vector network a mechanism uses when its ``net=`` is not given
DEFAULT_VECTOR_NETWORK = "mlp"
