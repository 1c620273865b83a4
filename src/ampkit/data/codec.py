"""Encode one array into a 2-byte stored dtype (float16, bfloat16, int16) with exact error accounting.

The error of a sample is measured on what a reader really gets back: the stored values decoded
by ``format.widen`` (float32) against the source in float64. ``max_rel`` is taken over the
finite, non-zero source values. This module decides *what* is stored (options, offsets,
``--dtype auto``; the options and offsets are :mod:`ampkit.data.codec_options`, re-exported
here, and ``auto`` first runs the :mod:`ampkit.data.scan` pre-pass); :mod:`ampkit.data.fused`
does the per-value work in one pass per sample (float32 for float32 sources), with the float64
reference (:mod:`ampkit.data.codec_ref`) for chunks holding NaN/Inf or values near the stored
dtype's limits.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import fused
from .codec_options import DTYPE_NAMES, CodecOptions, resolve_offset
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
from .scan import fp16_exact, scan
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
    sc = scan(x)
    return (sc.lo, sc.hi) if sc.lo is not None and sc.hi is not None else None


def is_integer_valued(x: np.ndarray) -> bool:
    """All values are finite integers."""
    return scan(x).integer


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


def _fp16_offset(x: np.ndarray, rng: tuple[float, float] | None, integer: bool) -> float:
    """``auto``'s fp16 offset: the range middle where it lowers the error bound, else 0.

    An offset that does not help only spoils the relative error of values near zero, and values
    that are float16 values already (a float16 source, say) are exact with offset 0 only.
    """
    if rng is None:
        return 0.0
    mid = resolve_offset("auto", rng, integer)
    if mid == 0.0 or _fp16_bound(rng, mid) >= _fp16_bound(rng, 0.0):
        return 0.0
    return 0.0 if fp16_exact(x) else mid


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
    sc = scan(x)
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
    offset = (
        _fp16_offset(x, rng, integer) if opts.offset is None else resolve_offset(opts.offset, rng, integer)
    )
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
