"""Meters of one study arm: step-time statistics, peak memory, energy, each with its method.

A *figure* is a JSON-ready dict ``{"value", "unit", "method"}``; a figure that could not be
measured has ``value: None`` and ``unavailable: <reason>`` instead of a guess.
:class:`ArmMeters` is the engine hook that starts the meters after warm-up and stops them
at the last step; it also streams the arm's progress to the parent as JSON lines.
"""

from __future__ import annotations

import gc
import json
import math
import resource
import statistics
import sys
from typing import Any, TextIO

import torch

from ..engine import RunSetup, StepRecord, synchronize
from .energy import EnergyCounter, EnergyWindow, NoEnergyCounter

Figure = dict[str, Any]


def figure(value: float | None, unit: str, method: str, **extra: Any) -> Figure:
    """A measured figure with the method that produced it."""
    return {"value": value, "unit": unit, "method": method, **extra}


def unavailable(unit: str, reason: str) -> Figure:
    """A figure this machine cannot measure; printed as ``unavailable``, never estimated."""
    return {"value": None, "unit": unit, "method": "unavailable", "unavailable": reason}


def percentile(values: list[float], q: float) -> float:
    """Linear-interpolated percentile ``q`` in [0, 100] (numpy's default method)."""
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100.0
    lo, hi = math.floor(pos), math.ceil(pos)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def step_time_figures(records: list[StepRecord], warmup: int) -> dict[str, Figure]:
    """Median, p90 and throughput over the steps after warm-up."""
    timed = records[warmup:]
    times = [r.time_s for r in timed]
    how = (
        f"engine StepRecord.time_s (whole step: forward, backward, optimizer; device-synchronised) "
        f"over steps {warmup + 1}-{warmup + len(timed)} ({len(timed)} steps, warm-up excluded)"
    )
    if not times:
        return {}
    return {
        "step_time_median_s": figure(statistics.median(times), "s", f"median of {how}"),
        "step_time_p90_s": figure(percentile(times, 90), "s", f"p90 of {how}"),
        "throughput": figure(
            sum(r.items for r in timed) / sum(times), "items/s", f"items processed ÷ summed step time, {how}"
        ),
    }


def peak_rss_bytes() -> int:
    """Peak resident set size of this process (ru_maxrss: kilobytes on Linux, bytes on macOS)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss if sys.platform == "darwin" else rss * 1024


def current_rss_bytes() -> int | None:
    """Resident set size now (Linux ``/proc/self/statm``), None elsewhere."""
    try:
        with open("/proc/self/statm") as f:
            import os

            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


class ArmMeters:
    """Engine hook: warm-up boundary, memory peaks, energy window, energy at evaluations, progress lines."""

    def __init__(
        self,
        warmup: int,
        total: int,
        counter: EnergyCounter | NoEnergyCounter,
        *,
        stream: TextIO | None = None,
        eval_every: int = 0,
    ):
        self.warmup, self.total, self.counter = warmup, total, counter
        self.stream, self.eval_every = stream, eval_every
        self.flags: dict[str, Any] = {}
        self.rss_at_start: int | None = current_rss_bytes()
        """RSS when the arm's meters were made: Python, torch and ampkit imported, no model built yet."""
        self.rss_before_train: int | None = None
        self.window: EnergyWindow | None = None
        self.train_energy: EnergyWindow | None = None
        self.energy_at_step: dict[int, float] = {}
        self.lr: float | None = None
        """The learning rate the arm trains with (read at the start)."""
        self._device = torch.device("cpu")

    def on_train_start(self, run: RunSetup) -> None:
        """Read the TF32 flags as the arm trains with them; start the whole-run energy window."""
        self._device = run.precision.device
        self.flags = {
            "cuda_matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32,
            "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
            "float32_matmul_precision": torch.get_float32_matmul_precision(),
            "default_dtype": str(torch.get_default_dtype()).removeprefix("torch."),
        }
        self.rss_before_train = current_rss_bytes()
        groups = run.optimizer.optimizer.param_groups
        self.lr = float(groups[0]["lr"]) if groups else None
        if not isinstance(self.counter, NoEnergyCounter):
            self.train_energy = EnergyWindow(self.counter, self._sync)
            self.train_energy.start()
        if self.warmup == 0:
            self._start_measuring()

    def _sync(self) -> None:
        synchronize(self._device)

    def _start_measuring(self) -> None:
        self._sync()
        if self._device.type == "cuda":  # peaks of the timed steps only, not of lazy init/autotune
            gc.collect()
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(self._device)
        if not isinstance(self.counter, NoEnergyCounter):
            self.window = EnergyWindow(self.counter, self._sync)
            self.window.start()

    def on_step_end(self, record: StepRecord, run: RunSetup) -> None:
        """Stream progress; start meters after warm-up; stop them at the last step."""
        if self.stream is not None:
            self.stream.write(
                json.dumps({"step": record.step, "total": self.total, "loss": record.loss}) + "\n"
            )
            self.stream.flush()
        if record.step == self.warmup:
            self._start_measuring()
        if self.train_energy is not None and self.eval_every and record.step % self.eval_every == 0:
            self.energy_at_step[record.step] = self.train_energy.elapsed_j()
        if record.step == self.total and self.window is not None:
            self.window.stop()

    def memory_figures(self) -> dict[str, Figure]:
        """GPU allocator peaks since warm-up, or the CPU process's peak RSS."""
        if self._device.type == "cuda":
            how = "after gc, empty_cache and reset_peak_memory_stats at the end of warm-up"
            return {
                "peak_mem_allocated_bytes": figure(
                    torch.cuda.max_memory_allocated(self._device),
                    "B",
                    f"torch.cuda.max_memory_allocated {how}",
                ),
                "peak_mem_reserved_bytes": figure(
                    torch.cuda.max_memory_reserved(self._device), "B", f"torch.cuda.max_memory_reserved {how}"
                ),
            }
        base, start, peak = self.rss_before_train, self.rss_at_start, peak_rss_bytes()
        out = {
            "peak_rss_bytes": figure(
                peak,
                "B",
                "getrusage(RUSAGE_SELF).ru_maxrss of the arm's own process (whole life, includes Python+torch; "
                f"RSS when training started: {base / 2**20:.0f} MiB)"
                if base
                else "getrusage(RUSAGE_SELF).ru_maxrss of the arm's own process (whole life)",
            ),
        }
        if start is not None and peak >= start:  # the CPU's counterpart of the GPU allocator's peak
            out["peak_rss_added_bytes"] = figure(
                peak - start,
                "B",
                "peak RSS (ru_maxrss) minus the arm's RSS before its model was built "
                f"({start / 2**20:.0f} MiB: Python, torch and ampkit imported): what the run added "
                "(model, optimizer state, activations, allocator caches)",
            )
        return out

    def energy_figures(self, items: int) -> dict[str, Figure]:
        """Joules and joules per item over the timed steps, or ``unavailable`` with the reason."""
        if isinstance(self.counter, NoEnergyCounter) or self.window is None or self.window.joules is None:
            reason = getattr(self.counter, "reason", "energy window did not close")
            return {"energy_j": unavailable("J", reason), "energy_per_item_j": unavailable("J/item", reason)}
        w, joules = self.window, self.window.joules
        how = f"{self.counter.method}; window = timed steps ({w.seconds or 0:.2f} s)"
        if self.eval_every:
            how += ", including the periodic evaluations inside it"
        flags = w.flags
        return {
            "energy_j": figure(joules, "J", how, flags=flags),
            "energy_per_item_j": figure(joules / max(items, 1), "J/item", f"{how}; ÷ items", flags=flags),
        }
