"""The device a ``Precision`` is bound to, checked before anything probes it.

A script's ``--device cuda`` default on a machine without CUDA (or ``cuda:3`` on a one-GPU
box, or a typo such as ``gpu``) would otherwise end in torch's own traceback
(``AssertionError: Torch not compiled with CUDA enabled``) the first time the device's
capabilities are read. :func:`usable_device` turns each into one :class:`PrecisionError` line
naming the device and the devices this machine has.
"""

from __future__ import annotations

import torch

from .aliases import PrecisionError

#: The device spellings torch takes and ampkit trains on.
DEVICE_FORMS = "cpu, cuda, cuda:N, mps, xpu, xpu:N"


def available(kind: str) -> tuple[bool, str]:
    """Whether torch can use device type ``kind`` here, and the check that said no."""
    if kind == "cuda":
        return torch.cuda.is_available(), "torch.cuda.is_available() is False"
    if kind == "mps":
        mps = getattr(torch.backends, "mps", None)
        return bool(mps is not None and mps.is_available()), "torch.backends.mps.is_available() is False"
    if kind == "xpu":
        xpu = getattr(torch, "xpu", None)
        return bool(xpu is not None and xpu.is_available()), "torch.xpu.is_available() is False"
    return True, ""


def device_count(kind: str) -> int:
    """Devices of type ``kind`` torch sees (1 for a type without a count, such as mps)."""
    module = {"cuda": torch.cuda, "xpu": getattr(torch, "xpu", None)}.get(kind)
    return int(module.device_count()) if module is not None else 1


def devices_here() -> str:
    """The devices usable on this machine, as a ``valid:`` list (``"cpu"`` at least)."""
    here = ["cpu"]
    for kind in ("cuda", "mps", "xpu"):
        if available(kind)[0]:
            count = device_count(kind) if kind != "mps" else 1
            here.append(kind if count <= 1 else f"{kind}, {kind}:0..{kind}:{count - 1}")
    return ", ".join(here)


def usable_device(
    device: torch.device | str | int, *, source: str = "device", check: bool = True
) -> torch.device:
    """``device`` as a ``torch.device``, or one :class:`PrecisionError` line when torch cannot use it here.

    ``source`` names where the value came from in the message (``"--device"`` for a script's
    flag). With ``check=False`` only the spelling is checked (a caller that supplies the device's
    capabilities itself, e.g. a test playing an H100 on a CPU machine).
    """
    shown = str(device) if isinstance(device, torch.device | int) else repr(device)
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError, TypeError):
        raise PrecisionError(
            f"{source} {shown}: unknown device; valid: {DEVICE_FORMS} (here: {devices_here()})"
        ) from None
    if not check:
        return dev
    ok, why = available(dev.type)
    if not ok:
        raise PrecisionError(
            f"{source} {dev}: no {dev.type.upper()} device here ({why}); valid: {devices_here()}"
        )
    if dev.index is not None and dev.type in ("cuda", "xpu") and dev.index >= device_count(dev.type):
        raise PrecisionError(
            f"{source} {dev}: only {device_count(dev.type)} {dev.type} device(s) here; valid: {devices_here()}"
        )
    return dev
