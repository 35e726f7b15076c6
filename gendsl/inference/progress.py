"""One live line per chain while posterior inference runs: transitions done, warm-up or sampling,
and the divergences after warm-up so far.

The compiled sampler reports through ``jax.debug.callback`` (see
:func:`gendsl.numerics.mcmc.run_chains`), which is baked into the program: the program calls the
module-level :func:`report`, which forwards to the display of the :func:`showing` block in
force, so one compiled program serves every call (and the persistent cache keeps it).
"""

from __future__ import annotations

import contextlib
import sys
import threading

import numpy as np

__all__ = ["ChainLines", "report", "showing", "wanted"]


class ChainLines:
    """tqdm bars, one per chain, on stderr."""

    def __init__(self, num_chains: int, num_warmup: int, total: int):
        from tqdm.auto import tqdm

        self.num_warmup, self.total = num_warmup, total
        self._lock = threading.Lock()
        self.bars = [tqdm(total=total, desc=f"chain {c}", unit="it", position=c, leave=True, dynamic_ncols=True,
                          file=sys.stderr) for c in range(num_chains)]
        for bar in self.bars:
            bar.set_postfix_str("warm-up", refresh=False)

    def update(self, chain: int, done: int, divergences: int) -> None:
        """Chain ``chain`` has made ``done`` transitions, ``divergences`` of them divergent after warm-up."""
        with self._lock:
            bar = self.bars[chain]
            if done > self.num_warmup:
                bar.set_postfix_str(f"sampling, {divergences} divergent", refresh=False)
            bar.update(done - bar.n)  # redraws at most every tqdm's mininterval

    def close(self) -> None:
        for bar in self.bars:
            bar.close()


_current: list[ChainLines] = []


def report(chains, done, divergences) -> None:
    """The host end of the sampler's progress callback: chain ids and their divergences so far
    (numpy scalars or ``(C,)`` arrays), transitions done."""
    if _current:
        for chain, divergent in zip(np.atleast_1d(chains), np.atleast_1d(divergences)):
            _current[-1].update(int(chain), int(done), int(divergent))


@contextlib.contextmanager
def showing(num_chains: int, num_warmup: int, total: int):
    """Show the chains' lines while the block runs (the sampler's reports reach them)."""
    lines = ChainLines(num_chains, num_warmup, total)
    _current.append(lines)
    try:
        yield lines
    finally:
        _current.remove(lines)
        lines.close()


def wanted(progress: bool | None) -> bool:
    """Whether to show progress: as asked, or (None) when stderr is a terminal."""
    return sys.stderr.isatty() if progress is None else bool(progress)
