"""Memory of a command arm measured from outside: its process tree's RSS (``/proc``) and GPU memory (NVML).

The arm's processes are those of its process group (the arm runs in its own session) plus any
descendant that started a session of its own. :class:`TreeMeter` samples them every poll:
the sum of their ``VmRSS`` (the tree's resident memory at that instant) and each one's
``VmHWM`` (the kernel's own peak of that process). :class:`GpuMeter` asks NVML which processes
use each GPU and how much memory they hold, and samples the GPUs' energy counters, so the
energy of any time window of the arm can be read afterwards.
"""

from __future__ import annotations

import importlib
import itertools
from pathlib import Path
from typing import Any

from .meters import Figure, figure, unavailable

PROC = Path("/proc")


def _stat(pid_dir: Path) -> tuple[int, int, int] | None:
    """``(pid, ppid, pgrp)`` from ``/proc/PID/stat`` (None when the process is gone)."""
    try:
        text = (pid_dir / "stat").read_text()
    except OSError:
        return None
    fields = text[text.rfind(")") + 2 :].split()  # after "pid (comm) ": state ppid pgrp ...
    try:
        return int(pid_dir.name), int(fields[1]), int(fields[2])
    except (IndexError, ValueError):
        return None


def tree_pids(root: int, proc: Path = PROC) -> list[int]:
    """Processes in ``root``'s process group, and ``root``'s descendants in other groups."""
    rows = [s for d in proc.iterdir() if d.name.isdigit() and (s := _stat(d)) is not None]
    parent = {pid: ppid for pid, ppid, _ in rows}
    found = {pid for pid, _, pgrp in rows if pgrp == root}
    for pid in parent:
        seen, cur = 0, pid
        while cur in parent and cur not in found and seen < 64:  # walk up to the root (or give up)
            cur, seen = parent[cur], seen + 1
        if cur in found or cur == root:
            found.add(pid)
    return sorted(found)


def _status_kib(pid: int, proc: Path) -> tuple[int, int] | None:
    """``(VmRSS, VmHWM)`` in KiB, None for a zombie or a vanished process."""
    try:
        text = (proc / str(pid) / "status").read_text()
    except OSError:
        return None
    vals = {}
    for line in text.splitlines():
        if line.startswith(("VmRSS:", "VmHWM:")):
            vals[line[:5]] = int(line.split()[1])
    if "VmRSS" not in vals:
        return None
    return vals["VmRSS"], vals.get("VmHWM", vals["VmRSS"])


class TreeMeter:
    """Peak resident memory of a process tree, sampled from ``/proc``; ``exclude``: pids not counted."""

    def __init__(self, root: int, exclude: tuple[int, ...] = (), proc: Path = PROC):
        self.root, self.exclude, self.proc = root, set(exclude), proc
        self.available = proc.is_dir() and (proc / "self" / "status").exists()
        self.peak_sum_kib = 0
        self.peak_hwm_kib: dict[int, int] = {}
        self.samples = 0
        self.pids: list[int] = []

    def poll(self) -> list[int]:
        """Sample the tree once; returns its pids (the wrapper excluded)."""
        if not self.available:
            return []
        pids = [p for p in tree_pids(self.root, self.proc) if p not in self.exclude]
        total = 0
        for pid in pids:
            got = _status_kib(pid, self.proc)
            if got is None:
                continue
            rss, hwm = got
            total += rss
            self.peak_hwm_kib[pid] = max(self.peak_hwm_kib.get(pid, 0), hwm)
        if pids:
            self.samples += 1
            self.peak_sum_kib = max(self.peak_sum_kib, total)
        self.pids = pids
        return pids

    def figure(self, waited_maxrss_kib: int | None, interval_s: float) -> Figure:
        """``peak_rss_bytes`` of the tree: the largest of the sampled sum, any one process's VmHWM and
        the command's own ``wait4`` ru_maxrss."""
        if not self.available:
            return unavailable("B", "no /proc on this system to read the arm's processes from")
        best_hwm = max(self.peak_hwm_kib.values(), default=0)
        value = max(self.peak_sum_kib, best_hwm, waited_maxrss_kib or 0)
        if not value:
            return unavailable("B", "the arm ended before its processes could be read")
        how = (
            f"peak resident memory of the arm's process tree (its process group and descendants, "
            f"{len(self.peak_hwm_kib)} process(es) seen, the study's wrapper excluded): the largest of "
            f"the sum of VmRSS over the tree sampled every {interval_s * 1e3:.0f} ms ({self.samples} samples), "
            "any one process's VmHWM (kernel peak) and the command's ru_maxrss from wait4; whole life, "
            "includes the interpreter and libraries"
        )
        return figure(value * 1024, "B", how, processes=len(self.peak_hwm_kib))


class GpuMeter:
    """NVML: the arm's processes' memory on every GPU (peak) and the GPUs' energy counters (samples).

    ``module``: the NVML binding (``pynvml`` from nvidia-ml-py; a stand-in in tests).
    """

    def __init__(self, module: Any):
        self.nvml = module
        self.nvml.nvmlInit()
        self.handles = [
            self.nvml.nvmlDeviceGetHandleByIndex(i) for i in range(self.nvml.nvmlDeviceGetCount())
        ]
        self.peak_bytes = 0
        self.used_gpus: set[int] = set()
        self.energy: dict[int, list[tuple[float, float]]] = {}
        self.energy_error: str | None = None

    @classmethod
    def open(cls, module: str = "pynvml") -> GpuMeter | str:
        """A meter, or the reason there is none (no NVML, no GPU)."""
        try:
            meter = cls(importlib.import_module(module))
        except Exception as err:  # ImportError, NVMLError_LibraryNotFound, NVMLError_DriverNotLoaded
            return f"no NVIDIA GPU readable here (NVML: {type(err).__name__}: {err})"
        if not meter.handles:
            return "NVML lists no GPU on this machine"
        return meter

    def _processes(self, handle: Any) -> list[Any]:
        procs = list(self.nvml.nvmlDeviceGetComputeRunningProcesses(handle))
        getter = getattr(self.nvml, "nvmlDeviceGetGraphicsRunningProcesses", None)
        if getter is not None:
            try:
                procs += list(getter(handle))
            except Exception:
                pass
        return procs

    def poll(self, pids: list[int], now: float) -> None:
        """Sample the arm's GPU memory (max over GPUs of its processes' sum) and every energy counter."""
        wanted = set(pids)
        per_gpu = []
        for index, handle in enumerate(self.handles):
            try:
                mine = [p for p in self._processes(handle) if p.pid in wanted]
            except Exception:
                continue
            if mine:
                self.used_gpus.add(index)
                per_gpu.append(sum(int(p.usedGpuMemory or 0) for p in mine))
            try:
                joules = float(self.nvml.nvmlDeviceGetTotalEnergyConsumption(handle)) / 1000.0
                self.energy.setdefault(index, []).append((now, joules))
            except Exception as err:  # NVMLError_NotSupported before Volta
                self.energy_error = f"{type(err).__name__}: {err}"
        if per_gpu:
            self.peak_bytes = max(self.peak_bytes, max(per_gpu))

    def memory_figure(self, interval_s: float) -> Figure:
        """``peak_gpu_mem_bytes``, or unavailable when NVML never listed one of the arm's processes."""
        if not self.used_gpus:
            return unavailable(
                "B",
                "NVML listed none of the arm's processes on any GPU (a CPU-only run, or a container whose "
                "pids NVML does not see)",
            )
        return figure(
            self.peak_bytes,
            "B",
            "NVML nvmlDeviceGetComputeRunningProcesses usedGpuMemory of the arm's processes, summed per GPU, "
            f"max over GPUs {sorted(self.used_gpus)}, sampled every {interval_s * 1e3:.0f} ms "
            "(includes each process's CUDA context, caching-allocator reserve and other libraries)",
        )

    def joules_between(self, t0: float, t1: float) -> tuple[float | None, str]:
        """Energy of the arm's GPUs between two wall-clock times (linear between samples), with the method."""
        gpus = sorted(self.used_gpus)
        if not gpus:
            return None, "NVML listed none of the arm's processes on any GPU"
        if self.energy_error and not all(self.energy.get(g) for g in gpus):
            return None, f"NVML energy counter not readable ({self.energy_error})"
        total = 0.0
        for g in gpus:
            samples = self.energy.get(g, [])
            if len(samples) < 2 or samples[0][0] > t0 or samples[-1][0] < t1:
                return None, "the energy samples do not cover the window (the arm was shorter than the polls)"
            total += _at(samples, t1) - _at(samples, t0)
        return total, (
            f"NVML nvmlDeviceGetTotalEnergyConsumption of GPU(s) {gpus} (every process on them, not only "
            "the arm's), sampled by the study and interpolated at the window's ends"
        )


def _at(samples: list[tuple[float, float]], t: float) -> float:
    """Counter value at time ``t``, linear between the two samples around it."""
    for (ta, ea), (tb, eb) in itertools.pairwise(samples):
        if ta <= t <= tb:
            return ea if tb == ta else ea + (eb - ea) * (t - ta) / (tb - ta)
    return samples[-1][1]
