"""One memory probe: a training step of a task at one micro-batch, in a fresh process, measured.

Each probe is its own process (:mod:`~.probe_server` forks it), so what it measures is its own:
on a CPU the process's peak resident memory (``VmHWM`` from ``/proc/self/status``; ``ru_maxrss``
where there is no ``/proc``), on a GPU the peak of torch's caching allocator
(``max_memory_reserved``) in a CUDA context that started empty.

A probe runs the engine's own step (:func:`~ampkit.engine.loop.run_step`: autocast, fp32 loss,
scaled backward, AdamW step) once as a warm-up, then ``timed_steps`` (>= 1) more, timed. The peak
covers them all: the first step has no optimizer state yet while its activations live, the later
ones hold both, so the steady-state step is the one that decides whether a batch fits. With a CPU budget, a watchdog thread stops the probe as soon as its resident memory
passes the budget (no probe swaps the machine); a CUDA budget is the allocator's cap
(``set_per_process_memory_fraction``), so going past it is a ``torch.cuda.OutOfMemoryError``.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any

#: Exit code of a probe its watchdog stopped (resident memory past the budget).
OVER_BUDGET_EXIT = 86
#: How often the CPU watchdog reads the resident size, in seconds.
WATCH_PERIOD_S = 0.002


@dataclass(frozen=True)
class ProbeRequest:
    """What one probe trains."""

    task: str
    precision: str
    batch: int
    device: str = "cpu"
    size: str = "default"
    seed: int = 0
    budget_bytes: int | None = None
    """CPU: the watchdog's limit on resident memory; CUDA: the allocator's cap."""
    timed_steps: int = 2
    """Steps timed after the warm-up step (at least 1: the steady state sets the peak)."""
    threads: int | None = None
    keep_fp32: str | None = None
    fp8_emulate: bool = False


@dataclass
class ProbeResult:
    """What one probe measured. ``status``: ok, over (past the budget), oom, short (the task gives
    fewer samples per batch), timeout, killed or error."""

    batch: int
    status: str
    peak_bytes: int | None = None
    """Peak resident memory of the probe process (CPU) or peak reserved by torch's allocator (GPU)."""
    baseline_bytes: int | None = None
    """The same before the task was built: the process with Python, torch and ampkit loaded."""
    peak_allocated_bytes: int | None = None
    """GPU only: peak of tensors allocated."""
    step_times_s: list[float] = field(default_factory=list)
    seconds: float = 0.0
    """Wall time of the whole probe, process start to report."""
    reason: str | None = None
    delivered: int | None = None
    """Samples the task's batch really had (status short)."""
    items_per_sample: int = 1
    item_unit: str = "samples"

    @property
    def fits(self) -> bool:
        return self.status == "ok"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# -- measuring, in the probe process ---------------------------------------------------------------
def _status_bytes(key: str) -> int | None:
    """``VmRSS``/``VmHWM`` of this process from ``/proc/self/status``, in bytes; None without /proc."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def peak_rss() -> int | None:
    """This process's peak resident memory in bytes."""
    peak = _status_bytes("VmHWM")
    if peak is not None:
        return peak
    try:
        import resource
    except ImportError:  # Windows
        return None
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(maxrss if sys.platform == "darwin" else maxrss * 1024)  # macOS: bytes; Linux: KiB


def current_rss() -> int | None:
    """This process's resident memory now, in bytes (None where it cannot be read)."""
    return _status_bytes("VmRSS")


_REPORTED = threading.Lock()


def report(fd: int, result: ProbeResult) -> bool:
    """Write ``result`` as one JSON document to ``fd`` (the probe's result pipe), once per process:
    the watchdog and the end of :func:`measure` may race; the first one reports, the other is told."""
    if not _REPORTED.acquire(blocking=False):
        return False
    data = json.dumps(result.to_dict()).encode()
    while data:
        data = data[os.write(fd, data) :]
    return True


def _watch(budget: int, fd: int, batch: int) -> None:
    """Stop this process once its resident memory passes ``budget`` (polls every 2 ms)."""
    page = os.sysconf("SC_PAGE_SIZE")
    try:
        statm = open("/proc/self/statm", "rb", buffering=0)  # noqa: SIM115 - read in a loop
    except OSError:
        return  # no /proc: the peak is checked at the end instead
    while True:
        statm.seek(0)
        rss = int(statm.read().split()[1]) * page
        if rss > budget:
            stopped = "stopped as its resident memory passed it"
            if report(fd, ProbeResult(batch, "over", peak_bytes=peak_rss() or rss, reason=stopped)):
                os._exit(OVER_BUDGET_EXIT)
            return  # measure() reported first: its own peak check decides
        time.sleep(WATCH_PERIOD_S)


def _samples(batch: Any) -> int:
    """Samples in a ``(inputs, targets)`` batch: the first dimension of its targets (or inputs)."""
    import torch

    for part in (batch[1], batch[0]) if isinstance(batch, tuple | list) else (batch,):
        if isinstance(part, torch.Tensor) and part.dim() > 0:
            return int(part.shape[0])
        if isinstance(part, dict | tuple | list):
            values = part.values() if isinstance(part, dict) else part
            for value in values:
                if isinstance(value, torch.Tensor) and value.dim() > 0:
                    return int(value.shape[0])
    return -1


def _is_oom(err: BaseException) -> bool:
    import torch

    if isinstance(err, MemoryError | torch.cuda.OutOfMemoryError):
        return True
    text = str(err)
    return isinstance(err, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text)


def measure(request: ProbeRequest, fd: int | None = None) -> ProbeResult:
    """Build the task at ``request.batch`` and train; what it took. Runs in the probe process; ``fd``
    (the result pipe) lets the CPU watchdog report before it stops the process."""
    import torch

    from ..engine.config import TrainConfig
    from ..engine.loop import run_step, synchronize
    from ..engine.setup import build_run
    from ..tasks.registry import describe_exception

    result = ProbeResult(request.batch, "ok", baseline_bytes=current_rss())
    cuda = request.device.startswith("cuda")
    if request.threads:
        torch.set_num_threads(request.threads)
    if request.budget_bytes is not None and not cuda and fd is not None:
        threading.Thread(target=_watch, args=(request.budget_bytes, fd, request.batch), daemon=True).start()
    try:
        if cuda:
            index = torch.device(request.device).index
            index = torch.cuda.current_device() if index is None else index
            torch.cuda.set_device(index)
            if request.budget_bytes is not None:
                total = torch.cuda.get_device_properties(index).total_memory
                torch.cuda.set_per_process_memory_fraction(min(1.0, request.budget_bytes / total), index)
            torch.cuda.reset_peak_memory_stats(index)
        config = TrainConfig(
            task=request.task,
            precision=request.precision,
            device=request.device,
            size=request.size,
            seed=request.seed,
            batch_size=request.batch,
            steps=1 + request.timed_steps,
            keep_fp32=request.keep_fp32,
            fp8_emulate=request.fp8_emulate,
            flop_share=False,
            progress=False,
        )
        run = build_run(config)
        result.items_per_sample, result.item_unit = run.task.items_per_sample, run.task.item_unit
        delivered = _samples(run.task.train_batch(0))
        if 0 <= delivered < request.batch:
            result.status, result.delivered = "short", delivered
            result.reason = f"the task's batches hold at most {delivered} samples"
            return result
        with run.precision.scope():
            run.model.train()
            for step in range(1 + request.timed_steps):
                began = time.perf_counter()
                run_step(run, step)
                synchronize(run.precision.device)
                if step:
                    result.step_times_s.append(time.perf_counter() - began)
    except Exception as err:
        result.status = "oom" if _is_oom(err) else "error"
        result.reason = describe_exception(err)
        if cuda and torch.cuda.is_initialized():
            torch.cuda.empty_cache()
    if cuda and torch.cuda.is_initialized():
        result.peak_bytes = int(torch.cuda.max_memory_reserved())  # the current device: set above
        result.peak_allocated_bytes = int(torch.cuda.max_memory_allocated())
    else:
        result.peak_bytes = peak_rss()
    budget = request.budget_bytes
    if result.status == "ok" and budget is not None and (result.peak_bytes or 0) > budget:
        result.status = "over"  # a spike between two watchdog reads
    return result
