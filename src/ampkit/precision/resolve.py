"""Turn flags and environment variables into one canonical mode, or one clear error.

The sources, in order of authority: the flags typed on the command line (``--precision``; the
seeds' ``--mixed_precision [--amp_dtype fp16|bf16]`` and ``--amp``; a script's own text
``--mixed_precision no|fp16|bf16|fp8`` (HF diffusers / Accelerate examples) and HF-Trainer-style
``--fp16`` / ``--bf16`` switches); a study arm's ``AMPKIT_PRECISION`` (any spelling, see
:mod:`ampkit.script_log`); the environment (``USE_AMP=1`` with ``AMP_DTYPE``, else Accelerate's
``ACCELERATE_MIXED_PRECISION``; read in :mod:`.env_mode`); then the script's own flags at their
defaults (Lightning's ``--precision 32-true`` is no request while ``USE_AMP=1`` is set). Typed
flags that disagree with each other are a conflict. HF's ``--tf32 True`` is the weakest: it turns
what would otherwise be fp32 into tf32 (beside a typed fp32 flag it is a conflict).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
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

log = logging.getLogger("ampkit")


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
    """The dtype a script's text ``--mixed_precision fp16|bf16|fp8`` names; a typed ``no`` (or
    ``none``, ``off``...) is fp32 unless another flag asks, over the environment (as Accelerate's
    explicit ``mixed_precision="no"`` is)."""
    fp16: bool = False
    """HF Trainer's ``--fp16``: fp16-mixed."""
    bf16: bool = False
    """HF Trainer's ``--bf16``: bf16-mixed."""
    tf32: bool = False
    """HF Trainer's ``--tf32 True``: tf32 where everything else would give fp32."""
    defaults: PrecisionRequest | None = None
    """What the script's flags ask for at their defaults (every flag as parsed, typed or not);
    read only when no typed flag and no environment variable names a mode."""


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
    """The precision flags of a parsed namespace (missing ones count as unset): the typed ones,
    with what all of them ask for at their defaults in ``defaults``.

    A flag counts as typed when the parser's action noted it (``add_precision_args`` tracks
    every precision flag); a namespace that never met ``add_precision_args`` has every value
    that differs from None count as typed. Flags a script defined itself are read as such
    scripts mean them: ``--amp_dtype`` only counts once ``--mixed_precision`` (or ``--amp``) is
    on, so the script's default ``--amp_dtype fp16`` without the switch is fp32, not an error;
    with ``--amp`` or a text ``--mixed_precision bf16`` (which name their own dtype) only a typed
    ``--amp_dtype`` counts, not the script's default. Only an ``--amp_dtype`` that ampkit itself
    defined (default None) is an error without a switch. A text ``--mixed_precision`` with an
    unknown value raises :class:`PrecisionError`.
    """
    owners = getattr(args, OWNERS_ATTR, None)
    if not isinstance(owners, FlagOwners):
        owners = FlagOwners()  # no add_precision_args: every flag is the script's own

    def value(name: str, default: Any = None) -> Any:
        return getattr(args, owners.dest(name), default)

    def typed(name: str, default: Any = None) -> Any:
        raw = value(name, default)
        return raw if owners.given_explicitly(name, raw) else default

    full = _request(value, owners, value("amp_dtype"))
    dtype = value("amp_dtype") if owners.owned_by_script("amp_dtype") else typed("amp_dtype")
    request = _request(typed, owners, dtype)  # a typed switch takes the script's default dtype
    text = typed("mixed_precision")
    if isinstance(text, str) and text.strip().lower() in _OFF_TEXT and "mixed_precision" in owners.tracked:
        request = replace(request, mixed_dtype=text)  # a typed --mixed_precision no: fp32
    return replace(request, defaults=None if full == request else full)


def _request(get: Callable[..., Any], owners: FlagOwners, amp_dtype: Any) -> PrecisionRequest:
    """The request the flag values ``get`` returns make (the script's dtype rule applied)."""
    mixed, mixed_dtype = _mixed_switch(get("mixed_precision", False))
    amp = bool(get("amp", False))
    if amp_dtype is not None and owners.owned_by_script("amp_dtype"):
        if not (mixed or amp):
            amp_dtype = None  # the script's dtype matters only once its switch is on
        elif (mixed_dtype or not mixed) and not owners.given_explicitly("amp_dtype", amp_dtype):
            amp_dtype = None  # --amp / --mixed_precision bf16: the script's default dtype was not asked for
    return PrecisionRequest(
        precision=get("precision"),
        mixed_precision=mixed,
        amp_dtype=amp_dtype,
        amp=amp,
        mixed_dtype=mixed_dtype,
        fp16=_switch_on(get("fp16")),
        bf16=_switch_on(get("bf16")),
        tf32=_switch_on(get("tf32")),
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
    it, see :func:`resolve_auto_amp`). Raises :class:`PrecisionError` on conflicts.

    Typed flags decide; without them a study arm's ``AMPKIT_PRECISION``, then ``USE_AMP`` /
    ``ACCELERATE_MIXED_PRECISION``, then the script's flags at their defaults (``request.defaults``),
    then ``default``. A typed ``--tf32`` turns an fp32 from the environment or the defaults into
    tf32 (beside a typed fp32 flag it is a conflict); one on by default only an fp32 from the
    defaults."""
    mode = _flag_mode(request, device_type, bf16_in_hardware)
    if mode is not None:
        return mode
    mode = study_mode(environ) or from_env(
        environ, device_type=device_type, bf16_in_hardware=bf16_in_hardware
    )
    if mode is not None and not (request.tf32 and mode == "fp32"):
        return mode
    tf32 = request.tf32
    if mode is None and request.defaults is not None:  # no environment: the script's defaults
        mode = _flag_mode(replace(request.defaults, tf32=False), device_type, bf16_in_hardware)
        tf32 = tf32 or request.defaults.tf32
    if tf32 and mode in (None, "fp32"):
        return "tf32"
    return mode or canonical_mode(default)


def _flag_mode(request: PrecisionRequest, device_type: str, bf16_in_hardware: bool) -> str | None:
    """The one mode ``request``'s flags ask for, None when they ask for none; conflicts raise."""
    asked = _asked(request, device_type, bf16_in_hardware)
    modes = {mode for _, mode in asked}
    if request.tf32 and modes == {"fp32"}:
        asked.append(("--tf32 True", "tf32"))  # fp32 means TF32 off: a conflict
        modes.add("tf32")
    if len(modes) > 1:
        spelled = " and ".join(f"{how} (= {mode})" for how, mode in asked)
        raise PrecisionError(f"conflicting precision flags: {spelled}; give one of them")
    if not modes:  # a typed --mixed_precision no: fp32 (tf32 with --tf32), over the environment
        return None if request.mixed_dtype is None else ("tf32" if request.tf32 else "fp32")
    mode = modes.pop()
    if request.amp and not request.amp_dtype:
        log_auto_choice("--amp", mode, device_type, bf16_in_hardware)
    if request.tf32:
        log.info("ampkit: %s runs %s; --tf32 only replaces fp32 (TF32 stays off)", asked[0][0], mode)
    return mode


def _asked(request: PrecisionRequest, device_type: str, bf16_in_hardware: bool) -> list[tuple[str, str]]:
    """(how it was spelled, mode) for each flag of ``request`` that asks for a mode (not ``--tf32``)."""
    asked: list[tuple[str, str]] = []
    if request.precision is not None:
        asked.append((f"--precision {request.precision}", canonical_mode(request.precision)))
    text = None if request.mixed_dtype is None else request.mixed_dtype.strip().lower()
    if text in _OFF_TEXT:
        text = None  # fp32 unless another flag asks (see _flag_mode)
    elif text is not None:
        if text not in _MIXED_TEXT:
            raise PrecisionError(
                f"--mixed_precision {request.mixed_dtype!r}: unknown value; valid: no, fp16, bf16, fp8"
            )
        asked.append((f"--mixed_precision {request.mixed_dtype}", _MIXED_TEXT[text]))
    mixed = request.mixed_precision or text is not None
    if mixed and (request.amp_dtype is not None or text is None):
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
    return asked
