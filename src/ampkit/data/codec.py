"""Encode one array into a 2-byte stored dtype (float16, bfloat16, int16) with exact error accounting.

The error of a sample is measured on what a reader really gets back: the stored values decoded
by ``format.widen`` (float32) against the source in float64. ``max_rel`` is taken over the
finite, non-zero source values. This module decides *what* is stored (options, offsets,
``--dtype auto``); :mod:`ampkit.data.fused` does the per-value work in one pass per sample
(float32 for float32 sources), with the float64 reference (:mod:`ampkit.data.codec_ref`) for
chunks holding NaN/Inf or values near the stored dtype's limits.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import UsageError
from . import fused
from .codec_ref import (
    BF16_MAX,
    FP16_MAX,
    INT16_RANGE,
    SampleError,
    error_stats,
    float32_to_bf16_bits,
    refuse_inexact_integers,
    refuse_nonfinite,
)
from .scratch import Scratch

__all__ = [
    "BF16_MAX",
    "DTYPE_NAMES",
    "FP16_MAX",
    "INT16_RANGE",
    "CodecOptions",
    "Encoded",
    "SampleError",
    "encode",
    "encode_as",
    "error_stats",
    "float32_to_bf16_bits",
    "is_integer_valued",
    "resolve_offset",
    "value_range",
]

FP16_ROUNDS_TO_INF = 65520.0
"""``|x - offset|`` from here on rounds to Inf in float16 (65504 is odd: the tie goes up)."""
DTYPE_NAMES = {
    "fp16": "float16",
    "float16": "float16",
    "half": "float16",
    "bf16": "bfloat16",
    "bfloat16": "bfloat16",
    "int16": "int16",
    "auto": "auto",
}
"""Accepted ``--dtype`` spellings -> stored dtype name (or ``auto``)."""


@dataclass(frozen=True)
class CodecOptions:
    """How samples are stored."""

    dtype: str = "auto"
    """``fp16``, ``bf16``, ``int16`` or ``auto`` (per sample: int16, else fp16, else bf16, else refuse)."""
    offset: float | str | None = None
    """Stored value is ``x - offset``: a number, ``"auto"`` (middle of the value range, an integer for
    integer-valued data) or None: no offset for a fixed dtype; with ``auto`` dtype, fp16 takes the
    range middle only where that lowers its error bound (an offset spoils relative error near 0)."""
    on_overflow: str = "error"
    """``error`` or ``clip`` (values beyond the stored dtype's range are clipped and counted)."""
    on_nonfinite: str = "error"
    """``error`` or ``keep`` (NaN/Inf stored as such; never possible in int16)."""
    max_abs_error: float = 1.0
    """``auto``: fp16 is taken only when its max absolute error is at most this (default: one HU)."""
    max_rel_error: float = 0.004
    """``auto``: bf16 is taken only when its max relative error is at most this (bf16 rounds within 2**-8)."""

    def __post_init__(self) -> None:
        if self.dtype not in DTYPE_NAMES:
            raise UsageError(f"unknown dtype {self.dtype!r}; valid: fp16, bf16, int16, auto")
        if self.on_overflow not in ("error", "clip"):
            raise UsageError(f"unknown on_overflow {self.on_overflow!r}; valid: error, clip")
        if self.on_nonfinite not in ("error", "keep"):
            raise UsageError(f"unknown on_nonfinite {self.on_nonfinite!r}; valid: error, keep")
        if isinstance(self.offset, str) and self.offset != "auto":
            raise UsageError(f"bad offset {self.offset!r}; valid: a number or auto")
        if self.offset is not None and not isinstance(self.offset, str):
            if not math.isfinite(self.offset):
                raise UsageError(f"offset {self.offset}: not finite; valid: a finite number or auto")
            resolve_offset(
                self.offset, (0.0, 0.0), False
            )  # float32-exact, refused now rather than per sample
        for name in ("max_abs_error", "max_rel_error"):
            value = getattr(self, name)
            try:
                ok = math.isfinite(float(value)) and float(value) >= 0
            except (TypeError, ValueError):
                ok = False
            if not ok:
                raise UsageError(f"{name} {value}: must be a finite number >= 0; valid: e.g. 1.0 or 0.004")


@dataclass
class Encoded:
    """One encoded sample."""

    data: np.ndarray
    """The stored array (bfloat16 as uint16 bit patterns), source shape, C order."""
    dtype: str
    """Stored dtype name: ``float16``, ``bfloat16`` or ``int16``."""
    offset: float
    """Decoded value = stored + offset (a float32-exact number)."""
    max_abs: float
    """Max |decoded - source| over finite source values."""
    max_rel: float
    """Max |decoded - source| / |source| over finite non-zero source values."""
    clipped: int
    """Values clipped into range (``on_overflow="clip"``)."""
    reason: str = ""
    """Why this dtype was chosen."""
    range: tuple[float, float] | None = None
    """``(min, max)`` of the finite source values (None: there are none)."""
    nonfinite: int = 0
    """NaN/Inf values in the source (stored as such; only with ``on_nonfinite="keep"``)."""


def value_range(x: np.ndarray) -> tuple[float, float] | None:
    """``(min, max)`` of the finite values, or None when there are none."""
    sc = fused.scan(x)
    return (sc.lo, sc.hi) if sc.lo is not None and sc.hi is not None else None


def is_integer_valued(x: np.ndarray) -> bool:
    """All values are finite integers."""
    return fused.scan(x).integer


def resolve_offset(offset: float | str | None, rng: tuple[float, float] | None, integer: bool) -> float:
    """The numeric offset for ``offset`` (None -> 0, ``auto`` -> middle of ``rng``), float32-exact."""
    if offset is None or rng is None:
        return 0.0
    if offset == "auto":
        if integer:  # the exact integer middle, rounded to a float32 value (decoding adds it in float32)
            return float(np.float32((int(rng[0]) + int(rng[1]) + 1) // 2))
        return float(np.float32((rng[0] + rng[1]) / 2.0))
    value = float(offset)
    if float(np.float32(value)) != value:
        raise UsageError(f"offset {value!r} is not exactly representable in float32; pick a rounder value")
    return value


def encode_as(
    x: np.ndarray, dtype: str, offset: float, opts: CodecOptions, name: str, scratch: Scratch | None = None
) -> Encoded:
    """Store ``x`` as ``dtype`` (stored name) with ``offset`` in one fused pass; raises ``SampleError``."""
    clip, keep = opts.on_overflow == "clip", opts.on_nonfinite == "keep"
    p = fused.encode_pass(x, dtype, offset, clip, keep, name, scratch)
    rng = (p.lo, p.hi) if p.lo is not None and p.hi is not None else None
    # without a finite value nothing is shifted (NaN/Inf - offset is NaN/Inf): record no offset
    return Encoded(
        p.data, dtype, offset if rng else 0.0, p.max_abs, p.max_rel, p.clipped, "", rng, p.nonfinite
    )


def _fp16_bound(rng: tuple[float, float], offset: float) -> float:
    """Half the fp16 spacing at the largest stored magnitude: the round-to-nearest error bound."""
    top = max(abs(rng[0] - offset), abs(rng[1] - offset))
    return float(np.spacing(np.float16(top))) / 2 if top <= FP16_MAX else float("inf")


def _fp16_offset(rng: tuple[float, float] | None, integer: bool) -> float:
    """``auto``'s fp16 offset: the range middle where it lowers the error bound, else 0.

    An offset that does not help only spoils the relative error of values near zero.
    """
    if rng is None:
        return 0.0
    mid = resolve_offset("auto", rng, integer)
    return mid if _fp16_bound(rng, mid) < _fp16_bound(rng, 0.0) else 0.0


def encode(x: np.ndarray, opts: CodecOptions, name: str, scratch: Scratch | None = None) -> Encoded:
    """Encode one sample as ``opts`` says (``auto``: pick per sample and record why).

    A fixed dtype with no or a numeric offset is one pass over the sample; ``--offset auto`` and
    ``--dtype auto`` first scan it (range, NaN/Inf, integrality), and ``auto`` may try fp16 then bf16.
    With a ``scratch`` (:mod:`ampkit.data.scratch`) the stored array is a view of one of its buffers.
    """
    if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
        raise SampleError(f"sample {name}: dtype {x.dtype} is not numeric; valid: float or integer arrays")
    refuse_inexact_integers(x, name)
    want = DTYPE_NAMES[opts.dtype]
    if want != "auto" and opts.offset != "auto":
        enc = encode_as(x, want, resolve_offset(opts.offset, (0.0, 0.0), False), opts, name, scratch)
        enc.reason = f"requested --dtype {opts.dtype}"
        return enc
    sc = fused.scan(x)
    if sc.nonfinite:
        refuse_nonfinite(x, opts.on_nonfinite == "keep", name)
    rng = (sc.lo, sc.hi) if sc.lo is not None and sc.hi is not None else None
    integer = sc.integer
    if want != "auto":
        enc = encode_as(x, want, resolve_offset(opts.offset, rng, integer), opts, name, scratch)
        enc.reason = f"requested --dtype {opts.dtype}"
        return enc
    if rng is None:
        span = "[]"
    else:  # integers in full (exact within ±2**53): 16777217 must not read as 1.67772e+07
        span = f"[{int(rng[0])}, {int(rng[1])}]" if integer else f"[{rng[0]:g}, {rng[1]:g}]"
    why_not = "non-integer values" if not integer else f"integer values in {span} exceed int16"
    if integer and rng is not None:
        lo, hi = int(rng[0]), int(rng[1])  # exact: integer sources are within ±2**53 (refused above)
        off = resolve_offset(opts.offset, rng, True)
        if opts.offset is None and not (lo >= INT16_RANGE[0] and hi <= INT16_RANGE[1]):
            off = resolve_offset("auto", rng, True)  # an offset can bring a 16-bit span into int16
        fits = off == int(off) and INT16_RANGE[0] <= lo - int(off) and hi - int(off) <= INT16_RANGE[1]
        if fits:
            enc = encode_as(x, "int16", off, opts, name, scratch)
            if enc.max_abs == 0.0:  # exact as a reader decodes it (float32(stored) + offset), not assumed
                enc.reason = f"integer values in {span}: int16 is exact"
                return enc
            why_not = f"integer values in {span}: int16 + offset {off:g} decodes (in float32) with max abs error {enc.max_abs:g}"
    strict = CodecOptions(dtype="auto", offset=opts.offset, on_nonfinite=opts.on_nonfinite)
    offset = _fp16_offset(rng, integer) if opts.offset is None else resolve_offset(opts.offset, rng, integer)
    try:
        if rng is not None and max(abs(rng[0] - offset), abs(rng[1] - offset)) >= FP16_ROUNDS_TO_INF:
            raise SampleError("beyond the fp16 range")  # known from the range: no pass needed
        enc = encode_as(x, "float16", offset, strict, name, scratch)
        if enc.max_abs <= opts.max_abs_error:
            enc.reason = (
                f"{why_not}; fp16 max abs error {enc.max_abs:g} <= {opts.max_abs_error:g} (offset {offset:g})"
            )
            return enc
        fp16_fail = f"fp16 max abs error {enc.max_abs:g} > {opts.max_abs_error:g}"
    except SampleError:
        fp16_fail = f"values beyond the fp16 range ±{FP16_MAX:g} after offset {offset:g}"
    # bf16 keeps relative precision, which an offset would only spoil near zero
    bf16_offset = resolve_offset(opts.offset, rng, integer)
    enc = encode_as(x, "bfloat16", bf16_offset, opts, name, scratch)
    if enc.max_rel <= opts.max_rel_error:
        enc.reason = f"{why_not}; {fp16_fail}; bf16 max rel error {enc.max_rel:g} <= {opts.max_rel_error:g}"
        return enc
    raise SampleError(
        f"sample {name}: no 2-byte dtype within tolerance ({fp16_fail}; bf16 max rel error "
        f"{enc.max_rel:g} > {opts.max_rel_error:g}); raise --max-abs-error/--max-rel-error "
        "or choose --dtype"
    )
