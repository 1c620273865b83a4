"""The read-only pre-passes of ``--dtype auto`` / ``--offset auto``: a sample's range, NaN/Inf, integrality,
and (:func:`fp16_exact`) whether it holds float16 values only.

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


_PROBE = 1024
"""Values :func:`fp16_exact` checks first: most data that is not float16 fails within them."""


def fp16_exact(x: np.ndarray) -> bool:
    """Every value of ``x`` is a float16 value: stored as float16 with offset 0 it reads back exactly.

    True at once for a float16 source; otherwise a read-only pass in chunks (compared in float64,
    NaN equal to NaN) that stops at the first chunk holding another value, after a small first probe.
    """
    if x.dtype == np.float16:
        return True
    flat = np.ravel(x, order="K")  # a view in memory order: no copy of a Fortran-ordered sample
    starts = [0, *range(min(_PROBE, flat.size), flat.size, fused.CHUNK)]
    for i, start in enumerate(starts):
        c = flat[start : starts[i + 1] if i + 1 < len(starts) else flat.size]
        with np.errstate(over="ignore", invalid="ignore"):
            back = c.astype(np.float16).astype(np.float64)
        if not np.array_equal(back, c.astype(np.float64), equal_nan=True):
            return False
    return True
