"""MADE: a masked autoregressive MLP (Germain et al. 2015). Leading dimensions are batch: its
dense layers run as single 2-D matmuls, markedly faster to differentiate on CPU than a vmapped
per-example layer."""

from __future__ import annotations

from typing import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from gendsl.core.signatures import ACTIVATION, WIDTH_LIMIT, Param, Signature
from gendsl.nn.activations import ACTIVATIONS
from gendsl.nn.base import Network
from gendsl.nn.layers import dense

__all__ = ["MADE", "made_masks"]

#: ``made(...)`` in the language
MADE_SIGNATURE = Signature("made", "network", (
        Param("hidden", "ints", (64, 64), limit=WIDTH_LIMIT),
        Param("components", "int", 8, limit=1024),
        Param("activation", "str", "silu", ACTIVATION),
    ), "masked autoregressive network (MADE), mixture conditionals for reals")


def made_masks(n_elements: int, in_per: int, out_per: int, context: int, hidden: Sequence[int]) -> list[np.ndarray]:
    """Connectivity of a MADE: one boolean ``(out, in)`` mask per linear layer.

    Element ``d`` (0-based) has degree ``d + 1`` at the input and at the output; hidden units have
    degrees in ``0 .. n_elements - 1`` (degree 0 sees only the context); context features have
    degree 0, so they reach every hidden unit. A hidden unit sees inputs of degree ``<=`` its own,
    an output sees hidden units of degree strictly below its own: output ``d`` depends on ``x_<d``.

    Parameters
    ----------
    n_elements, in_per, out_per:
        Sequence length, input features per element (one-hot width or 1), outputs per element.
    context:
        Number of context features appended to the input.
    hidden:
        Hidden widths.

    Returns
    -------
    ``len(hidden) + 1`` boolean arrays; layer ``i``'s mask has shape ``(out_i, in_i)``.
    """
    degrees = [np.concatenate([np.repeat(np.arange(1, n_elements + 1), in_per), np.zeros(context, int)])]
    degrees += [(np.arange(h) * n_elements) // h for h in hidden]
    masks = [b[:, None] >= a[None, :] for a, b in zip(degrees[:-1], degrees[1:])]
    out_degrees = np.repeat(np.arange(1, n_elements + 1), out_per)
    masks.append(out_degrees[:, None] > degrees[-1][None, :])
    return masks


class MADE(eqx.Module):
    """Masked autoregressive MLP: ``(..., n_elements)`` and ``(..., context)`` -> ``(..., n_elements, out_per)``.

    Row ``d`` of the output depends only on elements ``x_<d`` and on the context. Tokens
    (``vocab`` set) enter one-hot; reals enter as they are. Leading dimensions are batch.
    """

    layers: tuple[eqx.nn.Linear, ...]
    n_elements: int = eqx.field(static=True)
    out_per: int = eqx.field(static=True)
    vocab: int | None = eqx.field(static=True)
    context: int = eqx.field(static=True)
    hidden: tuple[int, ...] = eqx.field(static=True)
    activation: str = eqx.field(static=True)

    def __init__(self, n_elements: int, out_per: int, hidden: Sequence[int], *, vocab: int | None = None,
                 context: int = 0, activation: str = "silu", key: jax.Array):
        in_size = n_elements * (vocab or 1) + context
        sizes = [in_size, *hidden, n_elements * out_per]
        keys = jax.random.split(key, len(sizes) - 1)
        self.layers = tuple(eqx.nn.Linear(a, b, key=k) for a, b, k in zip(sizes[:-1], sizes[1:], keys))
        self.n_elements, self.out_per, self.vocab = n_elements, out_per, vocab
        self.context, self.hidden, self.activation = context, tuple(hidden), activation

    def __call__(self, x: jax.Array, context: jax.Array | None = None) -> jax.Array:
        """x ``(..., n_elements)`` (ints for tokens), context ``(..., context)`` -> ``(..., n_elements, out_per)``."""
        lead = x.shape[:-1]
        h = jax.nn.one_hot(x, self.vocab).reshape(*lead, -1) if self.vocab else x.astype(jnp.float32)
        if self.context:
            h = jnp.concatenate([h, context], axis=-1)
        masks = made_masks(self.n_elements, self.vocab or 1, self.out_per, self.context, self.hidden)
        act = ACTIVATIONS[self.activation]
        for layer, mask in zip(self.layers[:-1], masks[:-1]):
            h = act(dense(layer, h, mask))
        return dense(self.layers[-1], h, masks[-1]).reshape(*lead, self.n_elements, self.out_per)


#: the ``made`` entry of the network table
NETWORK = Network(MADE_SIGNATURE, "autoregressive")
