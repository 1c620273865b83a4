"""Turn flags and environment variables into one canonical mode, or one clear error.

The sources, in order of authority: ``--precision``; the seeds' ``--mixed_precision
[--amp_dtype fp16|bf16]`` and ``--amp``; a script's own text ``--mixed_precision no|fp16|bf16|fp8``
(HF diffusers / Accelerate examples) and HF-Trainer-style ``--fp16`` / ``--bf16`` switches; a
study arm's ``AMPKIT_PRECISION`` (any spelling, see :mod:`ampkit.script_log`); the environment
(``USE_AMP=1`` with ``AMP_DTYPE``, else Accelerate's ``ACCELERATE_MIXED_PRECISION``; read in
:mod:`.env_mode`). Flags that disagree with each other are a conflict; the environment only
fills in a default.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from .aliases import PrecisionError, canonical_mode
from .args import OWNERS_ATTR, FlagOwners
from .env_mode import (
    _AMP_DTYPES,
    _FALSE_WORDS,
    amp_dtype_mode,
    from_env,
    log_auto_choice,
    resolve_auto_amp,
    study_mode,
)

#: A script's text ``--mixed_precision`` (Accelerate's vocabulary): the values that switch it on.
_MIXED_TEXT = {**_AMP_DTYPES, "fp8": "fp8-mixed"}
_OFF_TEXT = _FALSE_WORDS | {"none"}


@dataclass(frozen=True)
class PrecisionRequest:
    """The raw precision flags of one command line, before resolution."""

    precision: str | None = None
    """``--precision`` as typed (any alias)."""
    mixed_precision: bool = False
    """The seeds' ``--mixed_precision`` switch."""
    amp_dtype: str | torch.dtype | None = None
    """``--amp_dtype fp16|bf16`` (or float16, half, bfloat16, a torch dtype); fp16 when
    ``--mixed_precision`` is given without it (as in the guide)."""
    amp: bool = False
    """The seeds' ``--amp``: bf16 on a CPU and on GPUs that have it, else fp16."""
    mixed_dtype: str | None = None
    """The dtype a script's text ``--mixed_precision fp16|bf16|fp8`` names (``no`` leaves it None)."""
    fp16: bool = False
    """HF Trainer's ``--fp16``: fp16-mixed."""
    bf16: bool = False
    """HF Trainer's ``--bf16``: bf16-mixed."""


def _mixed_switch(raw: object) -> tuple[bool, str | None]:
    """A script's ``--mixed_precision`` value as (on, dtype it names): a switch (bool) or the text
    flag of HF diffusers / Accelerate scripts (``no``/``fp16``/``bf16``/``fp8``)."""
    if not isinstance(raw, str):
        return bool(raw), None
    key = raw.strip().lower()
    if key in _OFF_TEXT:
        return False, None
    if key in _MIXED_TEXT:
        return True, key
    raise PrecisionError(f"--mixed_precision {raw!r}: unknown value; valid: no, fp16, bf16, fp8")


def _switch_on(raw: object) -> bool:
    """An HF-style boolean flag (``--fp16``); anything but a bool or an int is not such a flag."""
    return isinstance(raw, bool | int) and bool(raw)


def request_from_args(args: object) -> PrecisionRequest:
    """The precision flags of a parsed namespace (missing ones count as unset).

    Flags a script defined itself (recorded by ``add_precision_args``; all of them when the
    namespace never went through it) are read as such scripts mean them: ``--amp_dtype`` only
    counts once ``--mixed_precision`` (or ``--amp``) is on, so the script's default
    ``--amp_dtype fp16`` without the switch is fp32, not an error; with ``--amp`` or a text
    ``--mixed_precision bf16`` (which name their own dtype) only a typed ``--amp_dtype`` counts,
    not the script's default. Only an ``--amp_dtype`` that ampkit itself defined (default None)
    is an error without a switch. A text ``--mixed_precision`` with an unknown value raises
    :class:`PrecisionError`.
    """
    owners = getattr(args, OWNERS_ATTR, None)
    if not isinstance(owners, FlagOwners):
        owners = FlagOwners()  # no add_precision_args: every flag is the script's own

    def value(name: str, default: Any = None) -> Any:
        return getattr(args, owners.dest(name), default)

    mixed, mixed_dtype = _mixed_switch(value("mixed_precision", False))
    amp, amp_dtype = bool(value("amp", False)), value("amp_dtype")
    if amp_dtype is not None and owners.owned_by_script("amp_dtype"):
        if not (mixed or amp):
            amp_dtype = None  # the script's dtype matters only once its switch is on
        elif (mixed_dtype or not mixed) and not owners.given_explicitly("amp_dtype", amp_dtype):
            amp_dtype = None  # --amp / --mixed_precision bf16: the script's default dtype was not asked for
    return PrecisionRequest(
        precision=value("precision"),
        mixed_precision=mixed,
        amp_dtype=amp_dtype,
        amp=amp,
        mixed_dtype=mixed_dtype,
        fp16=_switch_on(value("fp16")),
        bf16=_switch_on(value("bf16")),
    )


def resolve(
    request: PrecisionRequest,
    *,
    environ: Mapping[str, str] | None = None,
    device_type: str = "cpu",
    bf16_in_hardware: bool = False,
    default: str = "fp32",
) -> str:
    """The canonical mode a command line asks for on a ``device_type`` device (``--amp`` depends on
    it, see :func:`resolve_auto_amp`). Raises :class:`PrecisionError` on conflicts."""
    asked: list[tuple[str, str]] = []  # (how it was spelled, mode)
    if request.precision is not None:
        asked.append((f"--precision {request.precision}", canonical_mode(request.precision)))
    mixed = request.mixed_precision or request.mixed_dtype is not None
    if request.mixed_dtype is not None:
        key = request.mixed_dtype.strip().lower()
        if key not in _MIXED_TEXT:
            raise PrecisionError(
                f"--mixed_precision {request.mixed_dtype!r}: unknown value; valid: no, fp16, bf16, fp8"
            )
        asked.append((f"--mixed_precision {request.mixed_dtype}", _MIXED_TEXT[key]))
    if mixed and (request.amp_dtype is not None or request.mixed_dtype is None):
        dtype = request.amp_dtype or "fp16"
        asked.append((f"--mixed_precision --amp_dtype {dtype}", amp_dtype_mode(dtype, "--amp_dtype")))
    elif request.amp_dtype is not None and not request.amp:
        raise PrecisionError(
            f"--amp_dtype {request.amp_dtype} needs --mixed_precision or --amp; "
            f"or use --precision {amp_dtype_mode(request.amp_dtype, '--amp_dtype')}"
        )
    if request.amp:
        mode = (
            amp_dtype_mode(request.amp_dtype, "--amp_dtype")
            if request.amp_dtype and not mixed
            else resolve_auto_amp(device_type, bf16_in_hardware)
        )
        asked.append(("--amp", mode))
    if request.fp16:
        asked.append(("--fp16", "fp16-mixed"))
    if request.bf16:
        asked.append(("--bf16", "bf16-mixed"))
    modes = {mode for _, mode in asked}
    if len(modes) > 1:
        spelled = " and ".join(f"{how} (= {mode})" for how, mode in asked)
        raise PrecisionError(f"conflicting precision flags: {spelled}; give one of them")
    if modes:
        mode = modes.pop()
        if request.amp and not request.amp_dtype:
            log_auto_choice("--amp", mode, device_type, bf16_in_hardware)
        return mode
    return (
        study_mode(environ)
        or from_env(environ, device_type=device_type, bf16_in_hardware=bf16_in_hardware)
        or canonical_mode(default)
    )
