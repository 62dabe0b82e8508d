"""Reuse of Ferret's large per-iteration buffers (the GGM trees, 168 MB at the main parameter set).

A fresh buffer of that size is a fresh mapping: every first write to one of its pages is a page
fault, and on this machine (a Firecracker guest) a fault on memory the host has not backed yet
costs about as much as the whole GGM expansion, so allocating anew each iteration made the
silent source spend most of its time faulting pages in (docs/PERFORMANCE.md).

Invariant: a buffer is handed out again only when nothing but this recycler references it, which
is what its reference count says: every numpy view of it (the pool's segments, a caller's chunk of
rows, a memoryview of those) holds a reference to it or to a view that does. So a caller that
keeps rows it took from the pool keeps their buffer out of reuse, and nothing that is still
reachable is ever overwritten.
"""

from __future__ import annotations

import sys

import numpy as np

KEEP = 3  # buffers kept per shape: the high-water mark of iterations whose rows are all alive
_FREE = 2  # sys.getrefcount of a list item that only the list holds (the list + the argument)


class Recycler:
    """Hands out uninitialised buffers, reusing one of at most ``keep`` per shape and dtype
    that nothing else references any more."""

    def __init__(self, keep: int = KEEP) -> None:
        self.keep = keep
        self._bufs: dict[tuple, list[np.ndarray]] = {}
        self.reused = 0
        self.allocated = 0

    def get(self, shape: tuple[int, ...], dtype: np.dtype | type) -> np.ndarray:
        """An uninitialised C-contiguous array of ``shape`` and ``dtype``: a kept one no longer
        referenced anywhere else, else a new one (kept if there is room)."""
        key = (tuple(shape), np.dtype(dtype).str)
        bufs = self._bufs.setdefault(key, [])
        for i in range(len(bufs)):
            if sys.getrefcount(bufs[i]) == _FREE:
                self.reused += 1
                return bufs[i]
        buf = np.empty(shape, dtype)
        self.allocated += 1
        if len(bufs) < self.keep:
            bufs.append(buf)
        return buf
