"""What a device can do in hardware, read in one patchable place.

Everything that depends on the machine (fit checks, ``--amp``'s choice, ``doctor``, the
study's ``auto`` arm list) asks :func:`device_capabilities`; tests patch that one function
to play a V100, an H100 or a CPU without bf16.
"""

from __future__ import annotations

import functools
import platform
from dataclasses import dataclass, field
from pathlib import Path

import torch

_CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16")
_CPU_FP16_FLAGS = ("avx512_fp16", "amx_fp16")


@dataclass(frozen=True)
class DeviceCaps:
    """Hardware facts about one device that decide which precisions make sense on it."""

    device_type: str
    """``"cpu"``, ``"cuda"`` or ``"mps"``."""
    name: str
    """CPU model or GPU name."""
    compute_capability: tuple[int, int] | None = None
    """CUDA compute capability; ``None`` off NVIDIA GPUs."""
    cpu_flags: frozenset[str] = field(default_factory=frozenset)
    """Instruction-set flags from ``/proc/cpuinfo`` (empty where unreadable)."""
    total_memory_bytes: int | None = None
    """Device memory (GPU) or physical memory (CPU) when known."""

    @property
    def is_cuda(self) -> bool:
        """An NVIDIA (or ROCm) GPU driven through ``torch.cuda``."""
        return self.device_type == "cuda"

    def _cc_at_least(self, major: int, minor: int = 0) -> bool:
        return self.compute_capability is not None and self.compute_capability >= (major, minor)

    @property
    def bf16_in_hardware(self) -> bool:
        """bf16 arithmetic in hardware: Ampere+ GPUs, CPUs with AVX512-BF16 or AMX."""
        if self.is_cuda:
            return self._cc_at_least(8)
        if self.device_type == "cpu":
            return any(f in self.cpu_flags for f in _CPU_BF16_FLAGS)
        return self.device_type == "mps"

    @property
    def fp16_in_hardware(self) -> bool:
        """fp16 arithmetic in hardware: any CUDA GPU of cc >= 5.3, CPUs with AVX512-FP16 / AMX-FP16."""
        if self.is_cuda:
            return self._cc_at_least(5, 3)
        if self.device_type == "cpu":
            return any(f in self.cpu_flags for f in _CPU_FP16_FLAGS)
        return self.device_type == "mps"

    @property
    def tf32_in_hardware(self) -> bool:
        """TF32 tensor cores: NVIDIA compute capability >= 8.0."""
        return self.is_cuda and self._cc_at_least(8)

    @property
    def fp8_in_hardware(self) -> bool:
        """FP8 tensor cores: NVIDIA compute capability >= 8.9 (Ada, Hopper and newer)."""
        return self.is_cuda and self._cc_at_least(8, 9)


def _cpu_model_and_flags() -> tuple[str, frozenset[str]]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine(), frozenset()
    name, flags = platform.processor() or platform.machine(), frozenset[str]()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and name in ("", platform.machine(), platform.processor()):
            name = value.strip()
        elif key == "flags" and not flags:
            flags = frozenset(value.split())
    return name, flags


def _physical_memory() -> int | None:
    try:
        import os

        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


@functools.lru_cache(maxsize=8)
def _probe(device_type: str, index: int) -> DeviceCaps:
    if device_type == "cuda":
        props = torch.cuda.get_device_properties(index)
        return DeviceCaps(
            "cuda", props.name, (props.major, props.minor), total_memory_bytes=props.total_memory
        )
    if device_type == "cpu":
        name, flags = _cpu_model_and_flags()
        return DeviceCaps("cpu", name, None, flags, _physical_memory())
    return DeviceCaps(device_type, device_type)


def device_capabilities(device: torch.device | str = "cpu") -> DeviceCaps:
    """Capabilities of ``device`` (cached per device). The single place tests patch."""
    dev = torch.device(device)
    index = dev.index if dev.index is not None else (torch.cuda.current_device() if dev.type == "cuda" else 0)
    return _probe(dev.type, index)
