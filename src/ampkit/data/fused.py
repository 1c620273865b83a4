"""The fused encode pass: one sweep over a sample, chunk by chunk, doing all the per-value work at once.

Per chunk (1 MiB of float32, so the temporaries stay in cache): the value range, the non-finite
and overflow checks, ``x - offset``, the cast to the 2-byte dtype (torch: F16C / AVX-512
conversions), the widening back to what a reader gets, and the error statistics. No float64
copy, no boolean-mask copy, no second pass over the sample, unless a chunk holds NaN/Inf or
values near the stored dtype's limits: such a chunk takes the float64 reference path with masks
(:mod:`ampkit.data.codec_ref`), which also clips or refuses.

Exactness (the figures equal the float64 reference of docs/data.md, ``codec_ref.error_stats``).
Sources exact in float32 (float32, float16, 8/16-bit integers) work in float32, others
(float64, wider integers) in float64, where everything is as the reference computes it (64-bit
integers beyond ±2**53, which float64 cannot hold, are refused before: ``codec_ref.refuse_inexact_integers``).
In float32:

* without an offset, ``|dec - src|`` is exact (dec is src rounded to 2 bytes, within a factor 2
  of it: Sterbenz), so ``max_abs`` is exact; with an offset it may round, and ``e / src`` always
  does. Rounding is monotone, so the float64 maximum lies among the values whose float32 figure
  is within a few ulps of the chunk's maximum: those few are recomputed in float64 whenever the
  chunk could beat the running maximum.
* ``x - offset`` may round in float32. fp16 must be the correctly rounded exact difference (what
  numpy's float64 -> float16 cast gives), so the difference is computed with its exact error
  (TwoSum) and rounded to odd, after which rounding to fp16 is correct (24 >= 11 + 2 bits).
  bf16 is defined as bf16(float32(x - offset)); int16 needs exact integers, so an inexact
  difference is a non-integer.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import codec_ref as ref
from .scratch import Scratch, empty

CHUNK = 1 << 17
"""Values per chunk: 1 MiB of float32 per temporary."""
_EXACT32 = {np.dtype(t) for t in ("float32", "float16", "int8", "uint8", "int16", "uint16")}
"""Source dtypes whose every value is a float32 (worked on in float32)."""
_STORED_NP = {"float16": np.float16, "bfloat16": np.uint16, "int16": np.int16}
_CAND = 1.0 - 2.0**-20
"""Candidates for a float64 recheck: float32 figures within this factor of the chunk's maximum."""


@dataclass
class Pass:
    """What one pass found: the stored array and the figures of docs/data.md."""

    data: np.ndarray
    max_abs: float = 0.0
    max_rel: float = 0.0
    clipped: int = 0
    lo: float | None = None
    hi: float | None = None
    nonfinite: int = 0

    def extend(self, lo: float | None, hi: float | None) -> None:
        """Widen the finite value range by a chunk's ``[lo, hi]``."""
        if lo is not None and hi is not None:
            self.lo = lo if self.lo is None else min(self.lo, lo)
            self.hi = hi if self.hi is None else max(self.hi, hi)


@contextmanager
def single_thread() -> Iterator[None]:
    """torch ops on this thread only (the pass is per-core work; workers parallelise samples)."""
    import torch  # here, not at import: ``import ampkit.data`` stays free of torch

    before = torch.get_num_threads()
    if before != 1:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        if before != 1:
            torch.set_num_threads(before)


def _round_to_odd_diff(c: np.ndarray, off: np.float32, s: np.ndarray, t: np.ndarray) -> bool:
    """``s`` = ``c - off`` rounded to odd (float32); True when some difference was inexact.

    TwoSum gives the exact error ``t`` of ``s = fl(c - off)``; where it is not zero and ``s`` has
    an even last bit, ``s`` moves one ulp towards the exact value (the odd neighbour).
    """
    np.subtract(c, off, out=s)
    bb = np.subtract(s, c)  # s = c + b with b = -off: bb = s - c
    np.subtract(s, bb, out=t)
    np.subtract(c, t, out=t)
    np.add(bb, off, out=bb)  # -(b - bb)
    np.subtract(t, bb, out=t)  # exact error: (c - (s - bb)) + (b - bb)
    if not t.any():
        return False
    bits, tbits = s.view(np.int32), t.view(np.int32)
    # step: +1 (away from zero) where t has the sign of s, else -1; only where t != 0 and bits even
    step = np.bitwise_xor(tbits, bits)
    np.right_shift(step, 31, out=step)  # 0 (same sign) or -1
    np.left_shift(step, 1, out=step)
    np.add(step, 1, out=step)  # +1 or -1
    fix = np.bitwise_and(bits, 1)
    np.subtract(1, fix, out=fix)  # 1 where the last bit is even
    np.multiply(step, fix, out=step)
    np.multiply(step, t != 0, out=step)
    np.add(bits, step, out=bits)
    return True


class _Kernel:
    """Buffers and torch views for one sample's pass."""

    def __init__(
        self,
        dtype: str,
        offset: float,
        work: np.dtype,
        out: np.ndarray,
        x: np.ndarray,
        keep: bool,
        scratch: Scratch | None = None,
    ):
        import torch

        n = min(CHUNK, out.size)
        self.torch: Any = torch
        self.dtype, self.offset, self.work = dtype, offset, work
        self.out, self.x, self.keep = out, x, keep
        self.off = work.type(offset)
        w = work.name
        self.src = empty(scratch, f"src-{w}", n, work)  # the chunk in the work dtype (when the source is not)
        self.v = empty(scratch, f"v-{w}", n, work)  # x - offset
        self.t = empty(scratch, f"t-{w}", n, work)  # scratch
        self.dec = empty(scratch, "dec", n, np.float32)  # what a reader gets
        self.e = empty(scratch, f"e-{w}", n, work)  # dec - src
        self.f32 = empty(scratch, "f32", n if dtype == "bfloat16" and work != np.float32 else 0, np.float32)
        self.out_t = torch.from_numpy(out)
        if dtype == "bfloat16":
            self.out_t = self.out_t.view(torch.bfloat16)
        self.dec_t = torch.from_numpy(self.dec)

    def chunk(self, raw: np.ndarray, start: int, p: Pass, name: str) -> bool:
        """Encode ``raw`` (the source values at ``start``) on the fast path; False: take the reference path."""
        lo, hi = raw.min(), raw.max()
        if not (np.isfinite(lo) and np.isfinite(hi)):
            return False
        flo, fhi = float(lo), float(hi)
        if max(abs(flo - self.offset), abs(fhi - self.offset)) >= ref.fast_limit(self.dtype):
            return False  # may overflow: the reference path counts, clips or refuses
        n = raw.size
        if raw.dtype == self.work and raw.flags.writeable:
            c = raw
        else:
            c = self.src[:n]
            np.copyto(c, raw, casting="unsafe")
        v = c
        if self.offset != 0:
            v = self.v[:n]
            if self.work == np.float32 and self.dtype != "bfloat16":
                inexact = _round_to_odd_diff(c, self.off, v, self.t[:n])
                if inexact and self.dtype == "int16":
                    ref.refuse_int16(self.x, self.keep, name, self.offset)
            else:
                np.subtract(c, self.off, out=v)
        if self.dtype == "int16" and not np.array_equal(np.floor(v, out=self.t[:n]), v):
            ref.refuse_int16(self.x, self.keep, name, self.offset)
        stored = self.out_t[start : start + n]
        if self.work == np.float32 or self.dtype == "int16":
            stored.copy_(self.torch.from_numpy(v))
        elif self.dtype == "float16":  # numpy rounds float64 to float16 once (torch goes via float32)
            np.copyto(self.out[start : start + n], v, casting="unsafe")
        else:  # bf16 is defined as bf16(float32(x - offset))
            v32 = self.f32[:n]
            np.copyto(v32, v, casting="unsafe")
            stored.copy_(self.torch.from_numpy(v32))
        dec = self.dec[:n]
        self.dec_t[:n].copy_(stored)
        if self.offset != 0:
            np.add(dec, np.float32(self.offset), out=dec)
        self._errors(c, dec, p)
        p.extend(flo, fhi)
        return True

    def _errors(self, c: np.ndarray, dec: np.ndarray, p: Pass) -> None:
        """Fold this chunk's max abs and max rel error into ``p`` (float64-exact figures)."""
        n = c.size
        e = np.subtract(dec, c, out=self.e[:n])
        amax = max(float(e.max()), -float(e.min()))
        if amax == 0.0:
            return
        exact = self.work == np.float64
        if amax >= p.max_abs * _CAND:
            if exact or self.offset == 0:
                p.max_abs = max(p.max_abs, amax)
            else:
                cand = np.flatnonzero(np.abs(e, out=self.t[:n]) >= amax * _CAND)
                p.max_abs = max(p.max_abs, ref.abs_at(c, dec, cand))
        with np.errstate(divide="ignore", invalid="ignore"):
            q = np.divide(e, c, out=self.t[:n])  # 0/0 -> NaN (skipped by fmax), x/0 -> inf
            rmax = max(float(np.fmax.reduce(q)), -float(np.fmin.reduce(q)))
        if not np.isfinite(rmax):  # a zero source with an error, or float32 overflow: masked float64
            p.max_rel = max(p.max_rel, ref.rel_at(c, dec, np.flatnonzero(c != 0)))
        elif rmax >= p.max_rel * _CAND:
            if exact:
                p.max_rel = max(p.max_rel, rmax)
            else:  # a subnormal float32 quotient has lost its relative precision: recheck every one
                thr = rmax * _CAND if rmax > 1e-30 else 0.0
                cand = np.flatnonzero(np.abs(q, out=q) >= thr)
                p.max_rel = max(p.max_rel, ref.rel_at(c, dec, cand))


def work_dtype(dtype: np.dtype) -> np.dtype:
    """float32 where every source value is a float32, else float64."""
    return np.dtype(np.float32) if np.dtype(dtype).newbyteorder("=") in _EXACT32 else np.dtype(np.float64)


def encode_pass(
    x: np.ndarray,
    dtype: str,
    offset: float,
    clip: bool,
    keep: bool,
    name: str,
    scratch: Scratch | None = None,
) -> Pass:
    """Store ``x - offset`` as ``dtype`` (stored name) in one pass; raises ``SampleError`` on a refusal.

    ``clip``: values beyond the dtype's range are clipped and counted (else refused); ``keep``:
    NaN/Inf are stored as such (else refused, naming how many). With a ``scratch`` the stored array
    is a view of its ``out-<dtype>`` buffer (valid until the next pass to that dtype).
    """
    flat = x.reshape(-1)
    out = empty(scratch, f"out-{dtype}", flat.size, _STORED_NP[dtype])
    p = Pass(out.reshape(x.shape))
    if flat.size == 0:
        return p
    kernel = _Kernel(dtype, offset, work_dtype(x.dtype), out, x, keep, scratch)
    with single_thread():
        for start in range(0, flat.size, CHUNK):
            raw = flat[start : start + CHUNK]
            if not kernel.chunk(raw, start, p, name):
                r = ref.encode_chunk(raw, dtype, offset, clip, keep, name, x)
                out[start : start + raw.size] = r.stored
                p.max_abs, p.max_rel = max(p.max_abs, r.max_abs), max(p.max_rel, r.max_rel)
                p.clipped += r.clipped
                p.nonfinite += r.nonfinite
                p.extend(r.lo, r.hi)
    return p
