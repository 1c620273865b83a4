"""The support matrix: for each number format, does this device do it in hardware, emulate it, or not at all?

Every rule reads :class:`DeviceCaps`, so a test that patches ``device_capabilities`` to play a
V100 or an H100 gets that GPU's matrix. The rules (also stated in ``docs/doctor.md``):

- fp64, fp32: hardware on CPUs and CUDA GPUs; fp64 is "no" on Apple MPS.
- tf32: hardware on NVIDIA compute capability >= 8.0; elsewhere "no" (an fp32 run stays fp32).
- bf16 / fp16: hardware where :class:`DeviceCaps` says so (Ampere+ / cc >= 5.3 GPUs; CPUs with
  AVX512-BF16 or AMX-BF16 / AVX512-FP16 or AMX-FP16); otherwise "emulated": torch computes in
  fp32 and rounds, which works but is slower than fp32, not faster.
- int8: hardware on CPUs with AVX512-VNNI, AVX-VNNI or AMX-INT8 and on GPUs of cc >= 6.1 (DP4A);
  otherwise "emulated".
- fp8: hardware on NVIDIA cc >= 8.9 (Ada, Hopper); elsewhere "emulated": the ``torch.float8_*``
  dtypes exist for storage, but there is no fp8 matmul.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from .capabilities import DeviceCaps

Level = Literal["hardware", "emulated", "no"]

#: Number formats in the order ``doctor`` lists them.
FORMATS: tuple[str, ...] = ("fp64", "fp32", "tf32", "bf16", "fp16", "int8", "fp8")

_INT8_CPU_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")


@dataclass(frozen=True)
class Support:
    """How one number format runs on one device."""

    format: str
    """``"fp64"``, ``"fp32"``, ``"tf32"``, ``"bf16"``, ``"fp16"``, ``"int8"`` or ``"fp8"``."""
    level: Level
    """``"hardware"`` (native units), ``"emulated"`` (works, via wider arithmetic) or ``"no"``."""
    why: str
    """The fact the level rests on, in a few words (shown by ``doctor``)."""


def _where(caps: DeviceCaps) -> str:
    if caps.compute_capability is not None:
        return f"cc {caps.compute_capability[0]}.{caps.compute_capability[1]}"
    return caps.device_type


def _fp64(caps: DeviceCaps) -> Support:
    if caps.device_type == "mps":
        return Support("fp64", "no", "MPS has no float64")
    return Support("fp64", "hardware", f"native on {_where(caps)}")


def _fp32(caps: DeviceCaps) -> Support:
    return Support("fp32", "hardware", f"native on {_where(caps)}")


def _tf32(caps: DeviceCaps) -> Support:
    if caps.tf32_in_hardware:
        return Support("tf32", "hardware", f"tensor cores ({_where(caps)} >= 8.0)")
    return Support("tf32", "no", f"needs NVIDIA cc >= 8.0; on {_where(caps)} tf32 runs as fp32")


def _native(caps: DeviceCaps, flags: tuple[str, ...]) -> str:
    """``"native on cc 8.0"`` or, on a CPU, the flags that make it native."""
    present = [f for f in flags if f in caps.cpu_flags]
    return (
        f"{' / '.join(present)} on cpu"
        if caps.device_type == "cpu" and present
        else f"native on {_where(caps)}"
    )


def _half(name: str, flags: tuple[str, ...]) -> Callable[[DeviceCaps], Support]:
    def rule(caps: DeviceCaps) -> Support:
        native = caps.bf16_in_hardware if name == "bf16" else caps.fp16_in_hardware
        if native:
            return Support(name, "hardware", _native(caps, flags))
        hint = f"no {' / '.join(flags)}" if caps.device_type == "cpu" else f"not native on {_where(caps)}"
        return Support(name, "emulated", f"{hint}: computed via fp32, slower than fp32")

    return rule


def _int8_in_hardware(caps: DeviceCaps) -> bool:
    if caps.is_cuda:
        return caps.compute_capability is not None and caps.compute_capability >= (6, 1)
    return any(flag in caps.cpu_flags for flag in _INT8_CPU_FLAGS)


def _int8(caps: DeviceCaps) -> Support:
    if _int8_in_hardware(caps):
        if caps.is_cuda:
            return Support("int8", "hardware", f"DP4A / tensor cores on {_where(caps)}")
        return Support("int8", "hardware", _native(caps, _INT8_CPU_FLAGS))
    return Support("int8", "emulated", f"no VNNI / DP4A on {_where(caps)}")


def _fp8(caps: DeviceCaps) -> Support:
    if caps.fp8_in_hardware:
        return Support("fp8", "hardware", f"fp8 tensor cores ({_where(caps)} >= 8.9)")
    return Support(
        "fp8", "emulated", "torch float8 dtypes are storage only here; no fp8 matmul (needs cc >= 8.9)"
    )


_RULES: dict[str, Callable[[DeviceCaps], Support]] = {
    "fp64": _fp64,
    "fp32": _fp32,
    "tf32": _tf32,
    "bf16": _half("bf16", ("avx512_bf16", "amx_bf16")),
    "fp16": _half("fp16", ("avx512_fp16", "amx_fp16")),
    "int8": _int8,
    "fp8": _fp8,
}


def support_matrix(caps: DeviceCaps) -> dict[str, Support]:
    """Every format in :data:`FORMATS` mapped to how ``caps`` runs it."""
    return {name: _RULES[name](caps) for name in FORMATS}
