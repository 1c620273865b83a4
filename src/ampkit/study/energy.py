"""Energy counters: NVML on NVIDIA GPUs, RAPL on CPUs where readable, otherwise ``unavailable``.

No estimate is ever returned as a measurement: without a counter the meter is
:class:`NoEnergyCounter` and every report prints ``unavailable`` with its reason.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import torch

#: Where Linux exposes RAPL package domains (``intel-rapl:0``; AMD CPUs use the same interface).
RAPL_ROOT = Path("/sys/class/powercap")
#: Windows shorter than this are flagged: NVML updates every ~20-100 ms, RAPL every ~1 ms but noisily.
MIN_WINDOW_S = 1.0


class EnergyCounter(Protocol):
    """A monotonically increasing energy reading of the device, in joules."""

    method: str
    """How the counter is read, for the report."""

    def read_j(self) -> float:
        """Joules since an arbitrary origin."""
        ...


@dataclass
class NoEnergyCounter:
    """This machine has no readable energy counter; ``reason`` says why."""

    reason: str
    method: str = "unavailable"


class NvmlEnergy:
    """``nvmlDeviceGetTotalEnergyConsumption`` (millijoules since driver load; Volta and newer)."""

    def __init__(self, index: int = 0, module: str = "pynvml", uuid: str | None = None):
        self._nvml = importlib.import_module(module)
        self._nvml.nvmlInit()
        # NVML numbers all GPUs; CUDA only the visible ones (CUDA_VISIBLE_DEVICES): match by UUID when known.
        by_uuid = getattr(self._nvml, "nvmlDeviceGetHandleByUUID", None)
        if uuid and by_uuid is not None:
            self._handle = by_uuid(uuid if uuid.startswith("GPU-") else f"GPU-{uuid}")
        else:
            self._handle = self._nvml.nvmlDeviceGetHandleByIndex(index)
        name = self._nvml.nvmlDeviceGetName(self._handle)
        name = name.decode() if isinstance(name, bytes) else name
        self.method = (
            f"NVML nvmlDeviceGetTotalEnergyConsumption, GPU {index} ({name}), synchronised at both ends"
        )
        self.read_j()  # fails here (NVMLError_NotSupported) on GPUs older than Volta

    def read_j(self) -> float:
        return float(self._nvml.nvmlDeviceGetTotalEnergyConsumption(self._handle)) / 1000.0


class RaplEnergy:
    """Sum of RAPL package domains ``intel-rapl:N/energy_uj``, unwrapped with ``max_energy_range_uj``."""

    def __init__(self, domains: Sequence[Path]):
        self._domains = list(domains)
        self._max = [int((d / "max_energy_range_uj").read_text()) for d in self._domains]
        self._last = [self._raw(i) for i in range(len(self._domains))]
        self._total_uj = 0
        names = ", ".join(d.name for d in self._domains)
        self.method = f"RAPL {names} energy_uj (package domains, wraparound corrected)"

    def _raw(self, i: int) -> int:
        return int((self._domains[i] / "energy_uj").read_text())

    def read_j(self) -> float:
        for i in range(len(self._domains)):
            now = self._raw(i)
            delta = now - self._last[i]
            if delta < 0:  # the counter wrapped past max_energy_range_uj back to 0
                delta += self._max[i]
            self._total_uj += delta
            self._last[i] = now
        return self._total_uj / 1e6


def rapl_domains(root: Path = RAPL_ROOT) -> list[Path]:
    """Readable top-level RAPL package domains (sub-domains like ``intel-rapl:0:0`` would double count)."""
    found = []
    for path in sorted(root.glob("intel-rapl*")) if root.is_dir() else []:
        if path.name.count(":") != 1:
            continue
        try:
            int((path / "energy_uj").read_text())
            int((path / "max_energy_range_uj").read_text())
        except (OSError, ValueError):
            continue
        found.append(path)
    return found


def open_counter(device: torch.device, *, rapl_root: Path = RAPL_ROOT) -> EnergyCounter | NoEnergyCounter:
    """The energy counter of ``device``, or :class:`NoEnergyCounter` with the reason there is none."""
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        try:
            uuid = getattr(torch.cuda.get_device_properties(index), "uuid", None)
            return NvmlEnergy(index, uuid=str(uuid) if uuid is not None else None)
        except Exception as err:  # ImportError, NVMLError_*: no counter, said plainly
            return NoEnergyCounter(f"NVML energy counter not readable ({type(err).__name__}: {err})")
    if device.type == "cpu":
        domains = rapl_domains(rapl_root)
        if domains:
            return RaplEnergy(domains)
        return NoEnergyCounter(f"no readable RAPL counter under {rapl_root} (absent in VMs, often root-only)")
    return NoEnergyCounter(f"no energy counter known for device type {device.type!r}")


class EnergyWindow:
    """Energy between :meth:`start` and :meth:`stop`, each after a device synchronise."""

    def __init__(self, counter: EnergyCounter, sync: Callable[[], None]):
        self.counter, self._sync = counter, sync
        self._e0 = self._t0 = 0.0
        self.joules: float | None = None
        self.seconds: float | None = None

    def start(self) -> None:
        """Begin the window (after queued device work is done)."""
        self._sync()
        self._e0, self._t0 = self.counter.read_j(), time.perf_counter()

    def elapsed_j(self) -> float:
        """Joules since :meth:`start` (synchronised)."""
        self._sync()
        return self.counter.read_j() - self._e0

    def stop(self) -> None:
        """End the window; sets ``joules`` and ``seconds``."""
        self._sync()
        self.joules = self.counter.read_j() - self._e0
        self.seconds = time.perf_counter() - self._t0

    @property
    def flags(self) -> list[str]:
        """Reasons to distrust the window: too short for the counter's update period, or a zero reading."""
        out = []
        if self.seconds is not None and self.seconds < MIN_WINDOW_S:
            out.append(f"window {self.seconds:.2f} s < {MIN_WINDOW_S:.0f} s: counter resolution dominates")
        if self.joules is not None and self.joules <= 0:
            out.append("counter read 0 J over the window")
        return out
