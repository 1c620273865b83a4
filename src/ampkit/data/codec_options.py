"""The codec's options: what a user may ask of ``convert`` per sample, checked when they are made.

``--dtype`` spellings (:data:`DTYPE_NAMES`), the offset (a number, ``auto`` or none), what to do
with values beyond the stored dtype's range and with NaN/Inf, and the tolerances of ``--dtype
auto``; :func:`resolve_offset` turns an offset setting into the float32-exact number stored.
:mod:`ampkit.data.codec` (which re-exports all three) encodes with them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import UsageError

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
