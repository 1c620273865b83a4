"""Encode one array into a 2-byte stored dtype (float16, bfloat16, int16) with exact error accounting.

The error of a sample is measured on what a reader really gets back: the stored values decoded
by ``format.widen`` (float32) against the source in float64. ``max_rel`` is taken over the
finite, non-zero source values. Work is done in flat chunks so a 300-slice CT volume does not
need several float64 copies of itself in memory.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import UsageError
from .format import widen

CHUNK = 1 << 22
"""Values per chunk of encoding/error work (bounds temporary memory to ~100 MB)."""
FP16_MAX = 65504.0
"""Largest finite float16."""
BF16_MAX = float(np.uint32(0x7F7F0000).view(np.float32))
"""Largest finite bfloat16 (3.3895e38)."""
INT16_RANGE = (-32768, 32767)
"""Representable int16 values."""
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


class SampleError(UsageError):
    """A sample cannot be stored as asked (overflow, non-finite values, tolerance); names the sample."""


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


def float32_to_bf16_bits(x: np.ndarray) -> np.ndarray:
    """float32 -> bfloat16 bit patterns (uint16), round-to-nearest-even; NaN stays NaN."""
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    rounded = ((u + (np.uint32(0x7FFF) + ((u >> 16) & np.uint32(1)))) >> 16).astype(np.uint16)
    nan = np.isnan(x)
    if nan.any():  # rounding could carry a NaN's payload into Inf: force a quiet NaN instead
        rounded[nan] = ((u[nan] >> 16) | np.uint32(0x0040)).astype(np.uint16)
    return rounded


def value_range(x: np.ndarray) -> tuple[float, float] | None:
    """``(min, max)`` of the finite values, or None when there are none."""
    finite = x if np.issubdtype(x.dtype, np.integer) else x[np.isfinite(x)]
    if finite.size == 0:
        return None
    return float(finite.min()), float(finite.max())


def is_integer_valued(x: np.ndarray) -> bool:
    """All values are finite integers."""
    if np.issubdtype(x.dtype, np.integer):
        return True
    flat = x.reshape(-1)
    return all(bool(np.all(np.floor(c) == c)) for c in _chunks(flat))


def resolve_offset(offset: float | str | None, rng: tuple[float, float] | None, integer: bool) -> float:
    """The numeric offset for ``offset`` (None -> 0, ``auto`` -> middle of ``rng``), float32-exact."""
    if offset is None or rng is None:
        return 0.0
    if offset == "auto":
        mid = (rng[0] + rng[1]) / 2.0
        return float(np.floor(mid + 0.5)) if integer else float(np.float32(mid))
    value = float(offset)
    if float(np.float32(value)) != value:
        raise UsageError(f"offset {value!r} is not exactly representable in float32; pick a rounder value")
    return value


def _chunks(flat: np.ndarray):  # type: ignore[no-untyped-def]
    for start in range(0, flat.size, CHUNK):
        yield flat[start : start + CHUNK]


def _round(v: np.ndarray, dtype: str) -> np.ndarray:
    """Round float64 values to the stored dtype (round-to-nearest-even; may give Inf on overflow)."""
    with np.errstate(over="ignore", invalid="ignore"):  # overflow is detected by the caller
        if dtype == "bfloat16":
            return float32_to_bf16_bits(v.astype(np.float32))
        if dtype == "float16":
            return v.astype(np.float16)
        return np.clip(v, *INT16_RANGE).astype(np.int16)


def _overflow(v: np.ndarray, stored: np.ndarray, dtype: str) -> np.ndarray:
    """Mask of finite values that do not fit: Inf after rounding (float types) or beyond int16."""
    if dtype == "int16":
        return (v < INT16_RANGE[0]) | (v > INT16_RANGE[1])
    return np.isinf(widen(stored, dtype, 0.0)) & np.isfinite(v)


def encode_as(x: np.ndarray, dtype: str, offset: float, opts: CodecOptions, name: str) -> Encoded:
    """Store ``x`` as ``dtype`` (stored name) with ``offset``; raises ``SampleError`` on overflow."""
    flat = np.ascontiguousarray(x).reshape(-1)
    out = np.empty(flat.size, dtype={"float16": np.float16, "bfloat16": np.uint16, "int16": np.int16}[dtype])
    limit = {"float16": FP16_MAX, "bfloat16": BF16_MAX, "int16": float(INT16_RANGE[1])}[dtype]
    clipped = 0
    for start, chunk in zip(range(0, flat.size, CHUNK), _chunks(flat)):
        v = chunk.astype(np.float64) - offset
        if dtype == "int16" and not np.all(np.floor(v) == v):
            raise SampleError(
                f"sample {name}: int16 needs integer values (after offset {offset:g}); use --dtype fp16/bf16/auto"
            )
        stored = _round(v, dtype)
        over = _overflow(v, stored, dtype)
        n_over = int(over.sum())
        if n_over and opts.on_overflow != "clip":
            worst = float(chunk[over][np.argmax(np.abs(v[over]))])
            bound = f"[{INT16_RANGE[0]}, {INT16_RANGE[1]}]" if dtype == "int16" else f"±{limit:g}"
            raise SampleError(
                f"sample {name}: {n_over} values beyond the {dtype} range {bound} after offset {offset:g} "
                f"(e.g. {worst:g}); use --on-overflow clip, --offset or another --dtype"
            )
        if n_over and dtype != "int16":  # int16 rounding already clipped
            stored = _round(np.where(over, np.sign(v) * limit, v), dtype)
        clipped += n_over
        out[start : start + chunk.size] = stored
    data = out.reshape(x.shape)
    max_abs, max_rel = error_stats(x, data, dtype, offset)
    return Encoded(data, dtype, offset, max_abs, max_rel, clipped)


def error_stats(x: np.ndarray, stored: np.ndarray, dtype: str, offset: float) -> tuple[float, float]:
    """``(max_abs, max_rel)`` of the decoded stored values against ``x`` (finite values; rel: non-zero)."""
    max_abs = max_rel = 0.0
    flat_x = np.ascontiguousarray(x).reshape(-1)
    flat_s = stored.reshape(-1)
    for start in range(0, flat_x.size, CHUNK):
        src = flat_x[start : start + CHUNK].astype(np.float64)
        dec = widen(flat_s[start : start + CHUNK], dtype, offset).astype(np.float64)
        ok = np.isfinite(src)
        err = np.abs(dec[ok] - src[ok])
        if err.size:
            max_abs = max(max_abs, float(err.max()))
            nz = src[ok] != 0
            if nz.any():
                max_rel = max(max_rel, float((err[nz] / np.abs(src[ok][nz])).max()))
    return max_abs, max_rel


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


def encode(x: np.ndarray, opts: CodecOptions, name: str) -> Encoded:
    """Encode one sample as ``opts`` says (``auto``: pick per sample and record why)."""
    if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
        raise SampleError(f"sample {name}: dtype {x.dtype} is not numeric; valid: float or integer arrays")
    nonfinite = 0 if np.issubdtype(x.dtype, np.integer) else int(x.size - np.isfinite(x).sum())
    if nonfinite and opts.on_nonfinite != "keep":
        raise SampleError(f"sample {name}: {nonfinite} NaN/Inf values in the source; use --on-nonfinite keep")
    rng = value_range(x)
    integer = nonfinite == 0 and is_integer_valued(x)
    want = DTYPE_NAMES[opts.dtype]
    if want != "auto":
        enc = encode_as(x, want, resolve_offset(opts.offset, rng, integer), opts, name)
        enc.reason = f"requested --dtype {opts.dtype}"
        return enc
    span = f"[{rng[0]:g}, {rng[1]:g}]" if rng else "[]"
    if integer and rng is not None:
        off = resolve_offset(opts.offset, rng, True)
        if opts.offset is None and not (rng[0] >= INT16_RANGE[0] and rng[1] <= INT16_RANGE[1]):
            off = resolve_offset("auto", rng, True)  # an offset can bring a 16-bit span into int16
        if rng[0] - off >= INT16_RANGE[0] and rng[1] - off <= INT16_RANGE[1]:
            enc = encode_as(x, "int16", off, opts, name)
            enc.reason = f"integer values in {span}: int16 is exact"
            return enc
    strict = CodecOptions(dtype="auto", offset=opts.offset, on_nonfinite=opts.on_nonfinite)
    offset = _fp16_offset(rng, integer) if opts.offset is None else resolve_offset(opts.offset, rng, integer)
    why_not = "non-integer values" if not integer else f"integer values in {span} exceed int16"
    try:
        enc = encode_as(x, "float16", offset, strict, name)
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
    enc = encode_as(x, "bfloat16", bf16_offset, opts, name)
    if enc.max_rel <= opts.max_rel_error:
        enc.reason = f"{why_not}; {fp16_fail}; bf16 max rel error {enc.max_rel:g} <= {opts.max_rel_error:g}"
        return enc
    raise SampleError(
        f"sample {name}: no 2-byte dtype within tolerance ({fp16_fail}; bf16 max rel error "
        f"{enc.max_rel:g} > {opts.max_rel_error:g}); raise --max-abs-error/--max-rel-error "
        "or choose --dtype"
    )
