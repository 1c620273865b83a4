"""The read-only pre-pass of ``--dtype auto`` / ``--offset auto``: a sample's range, NaN/Inf, integrality.

One sweep, chunk by chunk in :data:`ampkit.data.fused.CHUNK` values (looked up there, so a test
that shrinks the encode pass's chunks shrinks these too), folding each chunk's finite range into
a :class:`ampkit.data.fused.Pass`. It writes nothing; :mod:`ampkit.data.codec` decides from it what
to store, and :func:`ampkit.data.fused.encode_pass` then stores it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import fused
from .fused import Pass


@dataclass
class Scan:
    """A sample's finite value range, non-finite count and whether all values are finite integers."""

    lo: float | None
    hi: float | None
    nonfinite: int
    integer: bool


def scan(x: np.ndarray) -> Scan:
    """One read-only pass for ``--dtype auto`` / ``--offset auto``: range, non-finite count, integrality."""
    chunk = fused.CHUNK
    flat = x.reshape(-1)
    p = Pass(np.empty(0))
    integer = True
    is_int = np.issubdtype(x.dtype, np.integer)
    buf = np.empty(min(chunk, flat.size), x.dtype)
    for start in range(0, flat.size, chunk):
        c = flat[start : start + chunk]
        lo, hi = c.min(), c.max()
        if np.isfinite(lo) and np.isfinite(hi):
            p.extend(float(lo), float(hi))
        else:
            finite = c[np.isfinite(c)]
            p.nonfinite += c.size - finite.size
            if finite.size:
                p.extend(float(finite.min()), float(finite.max()))
            integer = False
        if integer and not is_int:
            integer = np.array_equal(np.floor(c, out=buf[: c.size]), c)
    return Scan(p.lo, p.hi, p.nonfinite, integer and p.nonfinite == 0)
