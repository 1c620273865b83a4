"""Every spelling of a precision users bring from other tools, normalised in one place.

Lightning (``"16-mixed"``, ``"bf16-true"``, ``32``...), Accelerate (``"no"``, ``"fp16"``,
``"bf16"``) and ampkit's canonical names all resolve through :func:`canonical_mode`.
"""

from __future__ import annotations

from .modes import CANONICAL


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

#: Every accepted spelling mapped to its canonical mode (canonical names map to themselves).
ALIASES: dict[str, str] = {**{name: name for name in CANONICAL}, **_ALIASES}


def valid_spellings() -> str:
    """The valid choices as one line, canonical names first."""
    extras = sorted(set(ALIASES) - set(CANONICAL))
    return f"{', '.join(CANONICAL)} (aliases: {', '.join(extras)})"


def canonical_mode(value: object) -> str:
    """Resolve any accepted spelling (str or int like Lightning's ``16``) to a canonical mode name.

    Case, surrounding blanks and ``_`` vs ``-`` do not matter. Raises :class:`PrecisionError`.
    """
    key = str(value).strip().lower().replace("_", "-")
    if key in ALIASES:
        return ALIASES[key]
    raise PrecisionError(f"unknown precision {value!r}; valid: {valid_spellings()}")
