"""Buffers a conversion process reuses from sample to sample.

A fresh multi-megabyte ``np.empty`` per sample is a fresh ``mmap`` for the C allocator, and every
one of its pages faults in when first written: on a 96³ float32 volume that was ~900 page faults
per sample, ~40% of a conversion's CPU time on a VM. A :class:`Scratch` hands out views of
buffers kept for the life of the run (a worker keeps one for all its shards), grown when a larger
sample arrives, so after the first sample no page is faulted in again.

Views are valid until the same slot is asked for again: the shard writer has written a sample's
bytes before the next sample is read, and a worker's result is pickled before its next task.
"""

from __future__ import annotations

from math import prod

import numpy as np
from numpy.typing import DTypeLike

_ALIGN = 64
"""Byte alignment of every view (a cache line; more than any numpy dtype needs)."""


class Scratch:
    """Named reusable buffers; ``array(slot, ...)`` is an uninitialised array like ``np.empty``."""

    def __init__(self) -> None:
        self._buffers: dict[str, np.ndarray] = {}

    def array(
        self, slot: str, shape: int | tuple[int, ...], dtype: DTypeLike, order: str = "C"
    ) -> np.ndarray:
        """An uninitialised ``shape``/``dtype`` array in ``slot``'s buffer (what it held before is overwritten)."""
        dims = (shape,) if isinstance(shape, int) else tuple(shape)
        dt = np.dtype(dtype)
        need = prod(dims) * dt.itemsize
        buf = self._buffers.get(slot)
        if buf is None or buf.nbytes < need + _ALIGN:
            buf = np.empty(need + need // 8 + _ALIGN, np.uint8)  # some room for a slightly larger sample
            self._buffers[slot] = buf
        start = -buf.ctypes.data % _ALIGN
        return buf[start : start + need].view(dt).reshape(dims, order=order)  # type: ignore[call-overload]

    @property
    def nbytes(self) -> int:
        """Bytes held, all slots together."""
        return sum(b.nbytes for b in self._buffers.values())


def empty(
    scratch: Scratch | None, slot: str, shape: int | tuple[int, ...], dtype: DTypeLike, order: str = "C"
) -> np.ndarray:
    """``scratch.array(...)``, or a fresh ``np.empty`` without a scratch."""
    if scratch is None:
        return np.empty(shape, dtype, order=order)  # type: ignore[call-overload]
    return scratch.array(slot, shape, dtype, order)
