"""``export(framework, precision, device)``: another framework's equivalent of an ampkit precision.

Any precision spelling ampkit accepts works (``"bf16"``, ``"16-mixed"``, ``"no"``...); the
framework name is case-insensitive and has a few common aliases (``pl``, ``fabric``, ``ds``,
``hf``). The label (exact / approximate / none) holds for one device type: ``device`` is
``"cuda"`` or ``"cpu"`` (``"cuda:1"`` counts as ``"cuda"``), by default this machine's.
"""

from __future__ import annotations

from ..errors import UsageError
from ..precision import canonical_mode
from .exporters import DEVICES, EXPORTERS, Export, Exporter

#: Framework names users bring, mapped to the exporter name.
FRAMEWORK_ALIASES: dict[str, str] = {
    "hf-accelerate": "accelerate",
    "pytorch-lightning": "lightning",
    "pl": "lightning",
    "fabric": "lightning",
    "ds": "deepspeed",
    "openmmlab": "mmengine",
    "hf": "transformers",
    "huggingface": "transformers",
    "hf-transformers": "transformers",
    "trainer": "transformers",
    "keras3": "keras",
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


def this_device() -> str:
    """This machine's device type: ``"cuda"`` with an NVIDIA GPU, else ``"cpu"``."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def device_type(device: str | None) -> str:
    """``"cuda"``/``"cpu"`` from a ``--device`` value (``None``: this machine's); UsageError otherwise."""
    if device is None:
        return this_device()
    kind = str(device).strip().lower().split(":", 1)[0]
    index = str(device).strip().lower().split(":", 1)[1:]
    if kind not in DEVICES or (index and (kind != "cuda" or not index[0].isdigit())):
        shown = device if device and str(device).strip() == device else repr(device)
        raise UsageError(
            f"--device {shown}: no export labels for it; valid: {', '.join(DEVICES)} (cuda:N counts as cuda)"
        )
    return kind


def export(framework: str, precision: object, device: str | None = None) -> Export:
    """``framework``'s equivalent of ``precision`` on ``device`` (raises ``PrecisionError``/``UsageError``)."""
    target = exporter(framework)
    return target.export(canonical_mode(precision), device_type(device))
