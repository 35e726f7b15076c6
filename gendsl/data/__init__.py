"""Data sets and data loading.

:mod:`gendsl.data.sets` draws the built-in sets (seeded, any size, every example drawn i.i.d.
from a fixed distribution, so a second draw is an independent sample of the same law):

- ``moons``, ``eight_gaussians``, ``checkerboard``: 2-D points, as in the FFJORD / flow-matching
  toy benchmarks, with values within about [-4, 4].
- ``digits``: scikit-learn's 8x8 handwritten digits as ``real[64]``, ``real[1, 8, 8]`` or
  ``real[8, 8]``, dequantised to (-1, 1); for a model with two data variables, a label
  (``token[1] of 10``) and the image.
- ``labelled_blobs``: a label (``token[1] of 4``) and a 2-D point from that label's blob.
- ``markov``: token sequences from a fixed random first-order Markov chain, whose exact entropy
  per sequence is known and reported as :attr:`Dataset.true_nll`.

:mod:`gendsl.data.files` reads the ``--data SRC`` of the command line (:func:`load_source`):
``builtin:NAME``, a ``.npy`` file (one data variable), or an ``.npz`` / ``.json`` file keyed by
variable name; :func:`split_heldout` sets examples aside for evaluation. :mod:`gendsl.data.images`
dequantises 8-bit images (``uint8`` arrays of ``real[C, H, W]`` or ``real[H, W]``) into (-1, 1) and
quantises samples back.
"""

from gendsl.data.dataset import Dataset
from gendsl.data.files import load_source, split_heldout
from gendsl.data.sets import (
    BUILTIN_NAMES,
    LABELLED_CENTRES,
    N_DEFAULT,
    builtin,
    labelled_blobs,
    markov_chain,
    markov_entropy,
)

__all__ = [
    "Dataset",
    "BUILTIN_NAMES",
    "N_DEFAULT",
    "builtin",
    "markov_chain",
    "markov_entropy",
    "labelled_blobs",
    "LABELLED_CENTRES",
    "load_source",
    "split_heldout",
]
