"""The float64 reference of encoding: exact error figures, masks for NaN/Inf, clipping and refusals.

:mod:`ampkit.data.fused` takes this path for the chunks its fast path does not handle (NaN/Inf,
values near the stored dtype's limits) and for the few values whose float32 figures it must
confirm; :func:`error_stats` is the definition the fast path's figures are tested against
(docs/data.md: decoded float32 against the source in float64, over finite values; relative
error over non-zero ones).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import UsageError
from .format import widen

FP16_MAX = 65504.0
"""Largest finite float16."""
BF16_MAX = float(np.uint32(0x7F7F0000).view(np.float32))
"""Largest finite bfloat16 (3.3895e38)."""
INT16_RANGE = (-32768, 32767)
"""Representable int16 values."""
EXACT_INT = 2**53
"""Integers beyond ``±2**53`` are not all float64 values: such a source cannot be measured or stored exactly."""
_LIMIT = {"float16": FP16_MAX, "bfloat16": BF16_MAX, "int16": float(INT16_RANGE[1])}


class SampleError(UsageError):
    """A sample cannot be stored as asked (overflow, non-finite values, tolerance); names the sample."""


def fast_limit(dtype: str) -> float:
    """Chunks whose ``|x - offset|`` reaches this may overflow ``dtype`` and take the reference path."""
    return _LIMIT[dtype]


def float32_to_bf16_bits(x: np.ndarray) -> np.ndarray:
    """float32 -> bfloat16 bit patterns (uint16), round-to-nearest-even; NaN stays NaN."""
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    rounded = ((u + (np.uint32(0x7FFF) + ((u >> 16) & np.uint32(1)))) >> 16).astype(np.uint16)
    nan = np.isnan(x)
    if nan.any():  # rounding could carry a NaN's payload into Inf: force a quiet NaN instead
        rounded[nan] = ((u[nan] >> 16) | np.uint32(0x0040)).astype(np.uint16)
    return rounded


def round_to(v: np.ndarray, dtype: str) -> np.ndarray:
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


def error_stats(x: np.ndarray, stored: np.ndarray, dtype: str, offset: float) -> tuple[float, float]:
    """``(max_abs, max_rel)`` of the decoded stored values against ``x`` in float64 (the definition)."""
    src = np.ascontiguousarray(x).reshape(-1).astype(np.float64)
    dec = widen(stored.reshape(-1), dtype, offset).astype(np.float64)
    ok = np.isfinite(src)
    err = np.abs(dec[ok] - src[ok])
    if not err.size:
        return 0.0, 0.0
    nz = src[ok] != 0
    rel = float((err[nz] / np.abs(src[ok][nz])).max()) if nz.any() else 0.0
    return float(err.max()), rel


def abs_at(c: np.ndarray, dec: np.ndarray, idx: np.ndarray) -> float:
    """Max ``|dec - c|`` in float64 over positions ``idx``."""
    if not idx.size:
        return 0.0
    return float(np.abs(dec[idx].astype(np.float64) - c[idx].astype(np.float64)).max())


def rel_at(c: np.ndarray, dec: np.ndarray, idx: np.ndarray) -> float:
    """Max ``|dec - c| / |c|`` in float64 over positions ``idx`` where ``c`` is not zero."""
    src = c[idx].astype(np.float64)
    nz = src != 0
    if not nz.any():
        return 0.0
    return float((np.abs(dec[idx][nz].astype(np.float64) - src[nz]) / np.abs(src[nz])).max())


def count_nonfinite(x: np.ndarray) -> int:
    """NaN/Inf values in ``x`` (0 for integer arrays)."""
    if np.issubdtype(x.dtype, np.integer):
        return 0
    return int(x.size - np.count_nonzero(np.isfinite(x)))


def refuse_nonfinite(x: np.ndarray, keep: bool, name: str) -> None:
    """Raise naming how many NaN/Inf ``x`` holds, unless they are kept or there are none."""
    n = 0 if keep else count_nonfinite(x)
    if n:
        raise SampleError(f"sample {name}: {n} NaN/Inf values in the source; use --on-nonfinite keep")


def refuse_inexact_integers(x: np.ndarray, name: str) -> None:
    """Refuse a 64-bit integer sample holding values beyond ``±2**53`` (checked in exact integers).

    Such values have no exact float64 (nor float32) value: every figure and every stored dtype would
    silently shift them (``2**63 + 1`` would decode as ``2**63`` and claim no error).
    """
    if x.dtype.kind not in "iu" or x.dtype.itemsize < 8 or x.size == 0:
        return
    lo, hi = int(x.min()), int(x.max())
    if lo >= -EXACT_INT and hi <= EXACT_INT:
        return
    raise SampleError(
        f"sample {name}: {x.dtype} values in [{lo}, {hi}] go beyond ±2**53 ({EXACT_INT}), where integers "
        "are no longer exact in float64, so no 2-byte dtype can store them without silently changing "
        "them; valid: integer values within ±2**53 (cast the source to float64 first to accept rounding)"
    )


def refuse_int16(x: np.ndarray, keep: bool, name: str, offset: float) -> None:
    """int16 met a non-integer: raise (a NaN/Inf refusal takes precedence, as it is checked first)."""
    refuse_nonfinite(x, keep, name)
    raise SampleError(
        f"sample {name}: int16 needs integer values (after offset {offset:g}); use --dtype fp16/bf16/auto"
    )


def refuse_overflow(x: np.ndarray, keep: bool, name: str, dtype: str, offset: float) -> None:
    """Raise naming how many values of ``x`` do not fit ``dtype`` after ``offset`` and the worst one."""
    refuse_nonfinite(x, keep, name)
    count, worst, largest = 0, 0.0, -1.0
    flat = x.reshape(-1)
    for start in range(0, flat.size, 1 << 20):
        c = flat[start : start + (1 << 20)]
        v = c.astype(np.float64) - offset
        over = _overflow(v, round_to(v, dtype), dtype)
        if over.any():
            count += int(over.sum())
            size = np.where(over, np.abs(v), -1.0)
            i = int(np.argmax(size))
            if size[i] > largest:
                largest, worst = float(size[i]), float(c[i])
    bound = f"[{INT16_RANGE[0]}, {INT16_RANGE[1]}]" if dtype == "int16" else f"±{_LIMIT[dtype]:g}"
    raise SampleError(
        f"sample {name}: {count} values beyond the {dtype} range {bound} after offset {offset:g} "
        f"(e.g. {worst:g}); use --on-overflow clip, --offset or another --dtype"
    )


@dataclass
class Chunk:
    """One chunk encoded on the reference path."""

    stored: np.ndarray
    max_abs: float
    max_rel: float
    clipped: int
    nonfinite: int
    lo: float | None
    hi: float | None


def encode_chunk(
    c: np.ndarray, dtype: str, offset: float, clip: bool, keep: bool, name: str, x: np.ndarray
) -> Chunk:
    """Encode chunk ``c`` of sample ``x`` in float64 with masks; refusals name the sample (``x`` counts)."""
    src = c.astype(np.float64)
    ok = np.isfinite(src)
    nonfinite = int(c.size - np.count_nonzero(ok))
    if nonfinite:
        refuse_nonfinite(x, keep, name)
    v = src - offset
    if dtype == "int16" and not np.all(np.floor(v) == v):
        refuse_int16(x, keep, name, offset)
    stored = round_to(v, dtype)
    over = _overflow(v, stored, dtype)
    clipped = int(over.sum())
    if clipped and not clip:
        refuse_overflow(x, keep, name, dtype, offset)
    if clipped and dtype != "int16":  # int16 rounding already clipped
        stored = round_to(np.where(over, np.sign(v) * _LIMIT[dtype], v), dtype)
    max_abs, max_rel = error_stats(src, stored, dtype, offset)
    finite = src[ok]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (None, None)
    return Chunk(stored, max_abs, max_rel, clipped, nonfinite, lo, hi)
