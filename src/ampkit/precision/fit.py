"""Does a precision mode fit a device? One patchable function decides.

Errors are for requests that cannot work (bf16 on a pre-Ampere GPU); warnings are for
requests that work but defeat their purpose (fp16 arithmetic on a CPU without it).
"""

from __future__ import annotations

import torch

from ..hardware.capabilities import DeviceCaps
from .aliases import PrecisionError
from .modes import ModeSpec


def check_fit(spec: ModeSpec, caps: DeviceCaps, *, fp8_emulate: bool = False) -> list[str]:
    """Warnings for running ``spec`` on ``caps``; raises :class:`PrecisionError` when it cannot run.

    ``fp8_emulate`` lets fp8 modes run their fp8 numerics in fp32 arithmetic where fp8 tensor
    cores are missing (slow; for tests and numerics studies).
    """
    warnings: list[str] = []
    where = f"{caps.device_type} ({caps.name})"
    if spec.fp8 and not caps.fp8_in_hardware and not fp8_emulate:
        raise PrecisionError(
            f"{spec.name} needs compute capability >= 8.9 (Ada, Hopper) for fp8 matmuls; {where} has "
            f"{caps.compute_capability or 'no fp8 tensor cores'}: use bf16-mixed, or --fp8-emulate to run "
            "fp8 numerics emulated (slow)"
        )
    if spec.fp8 and fp8_emulate:
        warnings.append(f"{spec.name} on {where}: fp8 emulated (fp8 casts and scales, fp32 matmuls); slow")
    if spec.quantization and caps.device_type != "cpu":
        warnings.append(
            f"{spec.name} on {where}: training runs fake-quantised here, but torch's int8 kernels are "
            "CPU-only: evaluate the converted model with --device cpu"
        )
    if spec.is_mixed and not torch.amp.is_autocast_available(caps.device_type):
        raise PrecisionError(
            f"{spec.name}: autocast is not available on {where}; use fp32 or a true-half mode"
        )
    if spec.uses_bf16 and caps.is_cuda and not caps.bf16_in_hardware:
        raise PrecisionError(
            f"{spec.name} needs compute capability >= 8.0 for bf16; {where} has "
            f"{caps.compute_capability}: use fp16-mixed"
        )
    if spec.uses_bf16 and caps.device_type == "cpu" and not caps.bf16_in_hardware:
        warnings.append(
            f"{spec.name} on {where}: no bf16 in hardware (no avx512_bf16 / AMX), bf16 is emulated and "
            "will be slow; use fp32"
        )
    if spec.uses_fp16 and not caps.fp16_in_hardware:
        better = "bf16-mixed" if caps.bf16_in_hardware else "fp32"
        warnings.append(
            f"{spec.name} on {where}: no fp16 arithmetic in hardware, fp16 compute is emulated and "
            f"tens to hundreds of times slower than fp32 (more the larger the matmul); use {better}"
        )
    if spec.tf32 and not caps.tf32_in_hardware:
        warnings.append(
            f"{spec.name} on {where}: TF32 needs an NVIDIA GPU with compute capability >= 8.0; "
            "here it runs exactly as fp32"
        )
    return warnings
