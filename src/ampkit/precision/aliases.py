"""Every spelling of a precision users bring from other tools, normalised in one place.

Lightning (``"16-mixed"``, ``"bf16-true"``, ``32``...), Accelerate (``"no"``, ``"fp16"``,
``"bf16"``) and ampkit's canonical names all resolve through :func:`canonical_mode`, and so do
``torch.float32`` / ``torch.float64``. A bare 16-bit dtype (``"float16"``, ``"half"``,
``torch.bfloat16``...) names no mode: it could be mixed or true, and the error says so.
"""

from __future__ import annotations

import torch

from .modes import CANONICAL, dtype_name


class PrecisionError(ValueError):
    """A precision request that cannot be honoured; the message is one line that names the fix."""


_ALIASES: dict[str, str] = {
    # Lightning
    "64": "fp64",
    "64-true": "fp64",
    "32": "fp32",
    "32-true": "fp32",
    "16": "fp16-mixed",
    "16-mixed": "fp16-mixed",
    "bf16": "bf16-mixed",
    "16-true": "fp16-true",
    # Accelerate ("bf16" as above)
    "no": "fp32",
    "fp16": "fp16-mixed",
    "fp8": "fp8-mixed",
    # short names for the quantised modes
    "int8": "int8-qat",
    "qat": "int8-qat",
    # plain dtype words
    "double": "fp64",
    "float64": "fp64",
    "float32": "fp32",
    "float": "fp32",
}

#: Dtype words that could mean a mixed or a true-half mode: the two choices each stands for.
AMBIGUOUS: dict[str, tuple[str, str]] = {
    "float16": ("fp16-mixed", "fp16-true"),
    "half": ("fp16-mixed", "fp16-true"),
    "bfloat16": ("bf16-mixed", "bf16-true"),
}

#: Every accepted spelling mapped to its canonical mode (canonical names map to themselves).
ALIASES: dict[str, str] = {**{name: name for name in CANONICAL}, **_ALIASES}


def valid_spellings() -> str:
    """The valid choices as one line, canonical names first."""
    extras = sorted(set(ALIASES) - set(CANONICAL))
    return f"{', '.join(CANONICAL)} (aliases: {', '.join(extras)})"


def canonical_mode(value: object) -> str:
    """Resolve any accepted spelling (str, int like Lightning's ``16``, or ``torch.float32`` /
    ``torch.float64``) to a canonical mode name.

    Case, surrounding blanks, a ``torch.`` prefix and ``_`` vs ``-`` do not matter. Raises
    :class:`PrecisionError`, which for a bare 16-bit dtype names the two modes it could mean.
    """
    if isinstance(value, torch.dtype) and not value.is_floating_point:
        key = str(value)  # torch.int8 is a dtype, not a request for int8-qat
    else:
        text = dtype_name(value) if isinstance(value, torch.dtype) else str(value)
        key = text.strip().lower().removeprefix("torch.").replace("_", "-")
    if key in ALIASES:
        return ALIASES[key]
    if key in AMBIGUOUS:
        mixed, true = AMBIGUOUS[key]
        bits = mixed.split("-")[0]
        raise PrecisionError(
            f"precision {value!r} is ambiguous (mixed or true {bits}?); "
            f"valid: {mixed} (autocast, fp32 weights) or {true} ({bits} weights)"
        )
    raise PrecisionError(f"unknown precision {value!r}; valid: {valid_spellings()}")
