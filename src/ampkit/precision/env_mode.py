"""Precision from the environment: a study arm's ``AMPKIT_PRECISION``, ``USE_AMP``/``AMP_DTYPE``,
Accelerate's ``ACCELERATE_MIXED_PRECISION``, and what ``--amp`` / ``USE_AMP=1`` mean on a device.

:mod:`.resolve` weighs these against a command line's flags (typed flags win; a flag left at its
default does not).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping

import torch

from ..script_log import PRECISION_ENV
from .aliases import PrecisionError, canonical_mode, valid_spellings
from .modes import dtype_name

log = logging.getLogger("ampkit")

_AMP_DTYPES = {
    "fp16": "fp16-mixed",
    "bf16": "bf16-mixed",
    "float16": "fp16-mixed",
    "half": "fp16-mixed",
    "bfloat16": "bf16-mixed",
}
_AMP_DTYPES_VALID = "fp16, bf16 (or float16, half, bfloat16)"
_TRUE_WORDS = {"1", "true", "yes", "on"}
_FALSE_WORDS = {"", "0", "false", "no", "off"}


def amp_dtype_mode(dtype: object, source: str) -> str:
    """The mixed mode an autocast dtype names: ``fp16``/``float16``/``half``/``torch.float16``, ``bf16``/..."""
    text = dtype_name(dtype) if isinstance(dtype, torch.dtype) else str(dtype)
    key = text.strip().lower().removeprefix("torch.")
    if key not in _AMP_DTYPES:
        raise PrecisionError(f"unknown {source} {dtype!r}; valid: {_AMP_DTYPES_VALID}")
    return _AMP_DTYPES[key]


def resolve_auto_amp(device_type: str, bf16_in_hardware: bool) -> str:
    """What ``--amp`` / ``USE_AMP=1`` mean on a device.

    On a CPU: bf16-mixed, autocast's CPU dtype and the only mixed mode without a loss scaler
    (where bf16 is emulated, ``Precision`` warns that it is slow). On a GPU: bf16-mixed where
    the hardware has bf16, else fp16-mixed.
    """
    if device_type == "cpu":
        return "bf16-mixed"
    return "bf16-mixed" if bf16_in_hardware else "fp16-mixed"


def log_auto_choice(source: str, mode: str, device_type: str, bf16_in_hardware: bool) -> None:
    if device_type == "cpu":
        reason = "CPU: autocast's CPU dtype" + ("" if bf16_in_hardware else ", bf16 emulated here (slow)")
    else:
        reason = f"{device_type}: " + ("bf16 in hardware" if bf16_in_hardware else "no bf16 in hardware")
    log.info("ampkit: %s chose %s (%s)", source, mode, reason)


def study_mode(environ: Mapping[str, str] | None = None) -> str | None:
    """The canonical mode a study arm asks for (``AMPKIT_PRECISION``, any spelling); None when unset."""
    env = os.environ if environ is None else environ
    text = env.get(PRECISION_ENV, "").strip()
    if not text:
        return None
    try:
        return canonical_mode(text)
    except PrecisionError:
        raise PrecisionError(f"unknown {PRECISION_ENV}={text!r}; valid: {valid_spellings()}") from None


def study_conflict(mode: str, environ: Mapping[str, str] | None = None) -> str | None:
    """The warning for a script whose own precision flags chose ``mode`` although the study arm
    asked for another (``AMPKIT_PRECISION``); None when they agree or no study asks."""
    asked = study_mode(environ)
    if asked is None or asked == mode:
        return None
    return (
        f"the study asked for {asked} ({PRECISION_ENV}) but the script's precision flags say {mode}; "
        f"running {mode} as the flags say (drop the flag from the study's command, or pass "
        f"{{precision}} / {{amp_flags}} there, to let the study choose)"
    )


def from_env(
    environ: Mapping[str, str] | None = None, *, device_type: str = "cpu", bf16_in_hardware: bool = False
) -> str | None:
    """Mode from ``USE_AMP`` / ``AMP_DTYPE`` (``None`` when ``USE_AMP`` is off); ``USE_AMP=1``
    alone is :func:`resolve_auto_amp` for ``device_type``. Without ``USE_AMP``, Accelerate's
    ``ACCELERATE_MIXED_PRECISION`` (what ``accelerate launch --mixed_precision bf16`` sets:
    ``no``, ``fp16``, ``bf16``, ``fp8``) decides; neither set: ``None``."""
    env = os.environ if environ is None else environ
    use_amp = env.get("USE_AMP", "").strip().lower()
    if not use_amp:
        return _accelerate_mode(env)
    if use_amp in _FALSE_WORDS:
        return None
    if use_amp not in _TRUE_WORDS:
        raise PrecisionError(f"unknown USE_AMP={env['USE_AMP']!r}; valid: 1, 0, true, false")
    dtype = env.get("AMP_DTYPE")
    if dtype:
        return amp_dtype_mode(dtype, "AMP_DTYPE")
    mode = resolve_auto_amp(device_type, bf16_in_hardware)
    log_auto_choice("USE_AMP=1", mode, device_type, bf16_in_hardware)
    return mode


_ACCELERATE = {"no": None, "fp16": "fp16-mixed", "bf16": "bf16-mixed", "fp8": "fp8-mixed"}


def _accelerate_mode(env: Mapping[str, str]) -> str | None:
    """The mode ``ACCELERATE_MIXED_PRECISION`` names (Accelerate's spellings), None when unset or ``no``."""
    raw = env.get("ACCELERATE_MIXED_PRECISION")
    if raw is None or not raw.strip():
        return None
    key = raw.strip().lower()
    if key not in _ACCELERATE:
        raise PrecisionError(
            f"unknown ACCELERATE_MIXED_PRECISION={raw!r}; valid: {', '.join(_ACCELERATE)} (Accelerate's values)"
        )
    return _ACCELERATE[key]
