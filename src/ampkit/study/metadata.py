"""Hardware and software facts recorded beside every study, so a figure can be traced to its machine."""

from __future__ import annotations

import os
import platform
import sys
from typing import Any

import torch

from ..hardware.capabilities import DeviceCaps

#: CPU flags that decide precision behaviour; shown first (the full list is recorded too).
PRECISION_FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16", "avx512_fp16", "amx_fp16", "f16c")


def machine_metadata(caps: DeviceCaps) -> dict[str, Any]:
    """Device, CPU flags or GPU name and compute capability, library versions, threads."""
    import numpy

    from .. import __version__

    hardware: dict[str, Any] = {
        "device_type": caps.device_type,
        "name": caps.name,
        "compute_capability": list(caps.compute_capability) if caps.compute_capability else None,
        "total_memory_bytes": caps.total_memory_bytes,
        "bf16_in_hardware": caps.bf16_in_hardware,
        "fp16_in_hardware": caps.fp16_in_hardware,
        "tf32_in_hardware": caps.tf32_in_hardware,
        "cpu_model": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
    }
    if caps.device_type == "cpu":
        hardware["cpu_model"] = caps.name
        hardware["precision_cpu_flags"] = [f for f in PRECISION_FLAGS if f in caps.cpu_flags]
        hardware["cpu_flags"] = sorted(caps.cpu_flags)
    if caps.is_cuda:
        hardware["gpu_count"] = torch.cuda.device_count()
    software = {
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "python": sys.version.split()[0],
        "numpy": numpy.__version__,
        "ampkit": __version__,
        "platform": platform.platform(),
        "parent_torch_threads": torch.get_num_threads(),
    }
    return {"hardware": hardware, "software": software}
