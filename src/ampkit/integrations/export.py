"""``export(framework, precision)``: another framework's equivalent of an ampkit precision.

Any precision spelling ampkit accepts works (``"bf16"``, ``"16-mixed"``, ``"no"``...); the
framework name is case-insensitive and has a few common aliases (``pl``, ``fabric``, ``ds``).
"""

from __future__ import annotations

from ..errors import UsageError
from ..precision import canonical_mode
from .exporters import EXPORTERS, Export, Exporter

#: Framework names users bring, mapped to the exporter name.
FRAMEWORK_ALIASES: dict[str, str] = {
    "hf-accelerate": "accelerate",
    "pytorch-lightning": "lightning",
    "pl": "lightning",
    "fabric": "lightning",
    "ds": "deepspeed",
    "openmmlab": "mmengine",
}

#: Valid ``--to`` values, in listing order.
FRAMEWORKS: tuple[str, ...] = tuple(EXPORTERS)


def exporter(framework: str) -> Exporter:
    """The exporter for ``framework``; :class:`UsageError` naming the valid ones otherwise."""
    key = str(framework).strip().lower().replace("_", "-")
    key = FRAMEWORK_ALIASES.get(key, key)
    if key not in EXPORTERS:
        raise UsageError(f"unknown framework {framework!r}; valid: {', '.join(FRAMEWORKS)}")
    return EXPORTERS[key]()


def export(framework: str, precision: object) -> Export:
    """``framework``'s equivalent of ``precision`` (any accepted spelling; raises ``PrecisionError``)."""
    target = exporter(framework)
    return target.export(canonical_mode(precision))
