"""A short, time-boxed matmul throughput probe per dtype: what this device really does with each format.

The probe must never hang: an fp16 matmul on a CPU without fp16 units is hundreds of times
slower than fp32 (a 2048² one took 42 s on our dev CPU). So each dtype starts at a small
square size, and the size doubles only while the time measured so far predicts that the next
size (8x the work) still fits in that dtype's budget. Timings follow ``METHODS.md``: one
warm-up call excluded, a device synchronise before each clock read, the median of repeats,
and the thread count recorded.
"""

from __future__ import annotations

import functools
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from ..precision.modes import DTYPES

#: Untimed warm-up at the start of a probe, in seconds (part of the budget).
WARMUP_S = 0.2
#: Timed calls per size at most; more than the 3 planned when they fit the budget, because
#: the fastest of many calls is what survives interference from other jobs.
MAX_REPEATS = 10

#: Square sizes tried in turn on CPUs and on GPUs.
CPU_SIZES: tuple[int, ...] = (256, 512, 1024, 2048)
GPU_SIZES: tuple[int, ...] = (256, 512, 1024, 2048, 4096, 8192)

#: dtypes probed by default, the fp32 baseline first; ``tf32`` is fp32 with TF32 matmul allowed
#: (measured on CUDA cc >= 8.0 only).
PROBE_DTYPES: tuple[str, ...] = ("fp32", "tf32", "bf16", "fp16", "fp64")


@dataclass(frozen=True)
class MatmulPoint:
    """One timed square matmul size."""

    size: int
    """n of the n x n @ n x n product (2·n³ floating-point operations)."""
    seconds: float
    """Median seconds per matmul over :attr:`repeats` timed calls."""
    fastest: float
    """Minimum seconds over the same calls (the least disturbed by other jobs; used to plan sizes)."""
    repeats: int
    """Timed calls (the warm-up call is not counted)."""

    @property
    def gflops(self) -> float:
        """Achieved GFLOP/s at this size (median call)."""
        return 2 * self.size**3 / self.seconds / 1e9

    @property
    def best_gflops(self) -> float:
        """GFLOP/s of the fastest call: what the device does when other jobs leave it alone."""
        return 2 * self.size**3 / self.fastest / 1e9


@dataclass(frozen=True)
class DtypeThroughput:
    """Every size measured for one dtype, smallest first."""

    dtype: str
    """``"fp32"``, ``"bf16"``... (``"tf32"`` = fp32 with TF32 allowed)."""
    points: tuple[MatmulPoint, ...]
    """Sizes measured within the budget; the last one is the most representative."""

    @property
    def best(self) -> MatmulPoint:
        """The largest size measured (small sizes understate throughput)."""
        return self.points[-1]

    def at(self, size: int) -> MatmulPoint | None:
        """The point measured at ``size``, if any."""
        return next((p for p in self.points if p.size == size), None)


@dataclass(frozen=True)
class Throughput:
    """Matmul throughput per dtype on one device, with the conditions it was measured under."""

    device: str
    """``"cpu"`` or ``"cuda:0"``."""
    threads: int
    """``torch.get_num_threads()`` during the probe (see ``measure_matmul(threads=...)``)."""
    results: dict[str, DtypeThroughput] = field(default_factory=dict)
    """Measured dtypes; a dtype the device refused is absent."""

    def ratio(self, dtype: str, base: str = "fp32") -> tuple[float, int] | None:
        """``dtype``'s best GFLOP/s over ``base``'s at the largest size both measured, with that size.

        Comparing at one size matters: fp16 on a CPU is only measured at a small size, and
        small sizes run below peak for every dtype. Comparing fastest calls matters on a
        shared machine: a median can land on a call slowed by another job, the fastest call
        rarely does, and the hardware ratio is what the recommendation needs.
        """
        a, b = self.results.get(dtype), self.results.get(base)
        if a is None or b is None:
            return None
        common = sorted({p.size for p in a.points} & {p.size for p in b.points})
        if not common:
            return None
        pa, pb = a.at(common[-1]), b.at(common[-1])
        assert pa is not None and pb is not None
        return pa.best_gflops / pb.best_gflops, common[-1]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn: Callable[[], object], device: torch.device) -> float:
    _sync(device)
    start = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - start


def _set_tf32(name: str) -> None:
    torch.backends.cuda.matmul.allow_tf32 = name == "tf32"
    torch.set_float32_matmul_precision("high" if name == "tf32" else "highest")


class _Probe:
    """Budget bookkeeping for one dtype: what it has spent and measured so far."""

    def __init__(self, name: str, budget_s: float):
        self.name, self.budget_s = name, budget_s
        self.spent = 0.0
        self.points: list[MatmulPoint] = []
        self.done = False

    def fits(self, size: int, repeats: int, min_size: int) -> bool:
        """Whether ``size`` is still worth measuring within the budget."""
        if self.done:
            return False
        if not self.points or size <= min_size:
            return True
        # Predict this size from the last one (work grows as n³) and stop before overrunning;
        # from the fastest call, not the median, so one descheduled call on a shared machine
        # does not stop the growth at a size too small to be representative.
        last = self.points[-1]
        return self.spent + last.fastest * (size / last.size) ** 3 * (repeats + 1) <= self.budget_s


def _measure_size(device: torch.device, probes: list[_Probe], size: int, repeats: int, min_size: int) -> None:
    """Time one size for every probe, interleaved call by call, so that load from other jobs
    on a shared machine hits all dtypes alike and their ratio stays meaningful."""
    products: dict[str, Callable[[], object]] = {}
    counts: dict[str, int] = {}
    times: dict[str, list[float]] = {}
    for probe in list(probes):
        _set_tf32(probe.name)
        dtype = DTYPES["fp32" if probe.name == "tf32" else probe.name]
        try:
            a = torch.randn(size, size, device=device).to(dtype)
            b = torch.randn(size, size, device=device).to(dtype)
            products[probe.name] = functools.partial(torch.matmul, a, b)
            warm = _timed(products[probe.name], device)
        except (RuntimeError, TypeError):  # a dtype this device rejects (fp64 on MPS): drop it
            probe.done, probe.points = True, []
            probes.remove(probe)
            continue
        probe.spent += warm
        affordable = int((probe.budget_s - probe.spent) / max(warm, 1e-9) / 2)  # leave room to grow
        counts[probe.name] = max(1, min(max(repeats, MAX_REPEATS), affordable))
        times[probe.name] = []
    for round_ in range(max(counts.values(), default=0)):
        for probe in probes:
            if round_ < counts[probe.name]:
                _set_tf32(probe.name)
                times[probe.name].append(_timed(products[probe.name], device))
    for probe in probes:
        taken = times[probe.name]
        probe.spent += sum(taken)
        probe.points.append(MatmulPoint(size, statistics.median(taken), min(taken), len(taken)))
        probe.done = probe.spent > probe.budget_s and size >= min_size


def measure_matmul(
    device: torch.device | str = "cpu",
    *,
    dtypes: Sequence[str] = PROBE_DTYPES,
    budget_s: float = 2.0,
    sizes: Sequence[int] | None = None,
    repeats: int = 3,
    min_size: int = 512,
    tf32_available: bool = False,
    threads: int | None = None,
) -> Throughput:
    """Time square matmuls per dtype within about ``budget_s`` seconds in all.

    ``tf32`` is measured only when ``tf32_available`` (else it would repeat fp32). Each dtype
    gets an equal share of the budget, but every dtype is measured up to ``min_size`` (a 512²
    fp16 matmul takes ~0.1 s even where fp16 is emulated) so that ratios are never taken
    on overhead-dominated sizes alone. Sizes grow together; at each size the dtypes still
    within budget are timed in turn. A dtype the device rejects is left out. ``sizes``
    defaults to 256²..2048² on CPUs and 256²..8192² on GPUs (small matmuls leave a GPU idle).
    ``threads`` sets ``torch.set_num_threads`` for the probe only (restored after).
    """
    dev = torch.device(device)
    if sizes is None:
        sizes = GPU_SIZES if dev.type == "cuda" else CPU_SIZES
    names = [d for d in dtypes if d != "tf32" or tf32_available]
    probes = [_Probe(name, max(0.0, budget_s - WARMUP_S) / max(1, len(names))) for name in names]
    saved = (
        torch.backends.cuda.matmul.allow_tf32,
        torch.get_float32_matmul_precision(),
        torch.get_num_threads(),
    )
    if threads is not None:
        torch.set_num_threads(threads)
    used = torch.get_num_threads()
    # Untimed: thread-pool start-up and lazy init would otherwise be charged to the first dtype.
    # Time-based, not a fixed count: on a busy machine the first calls can be 100x slow
    # while worker threads wait for a core.
    warm = torch.ones(256, 256, device=dev)
    started = time.perf_counter()
    while time.perf_counter() - started < WARMUP_S:
        _timed(functools.partial(torch.matmul, warm, warm), dev)
    try:
        for size in sizes:
            active = []
            for probe in probes:
                if probe.fits(size, repeats, min_size):
                    active.append(probe)
                else:
                    probe.done = True
            if not active:
                break
            _measure_size(dev, active, size, repeats, min_size)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = saved[0]
        torch.set_float32_matmul_precision(saved[1])
        torch.set_num_threads(saved[2])
    results = {p.name: DtypeThroughput(p.name, tuple(p.points)) for p in probes if p.points}
    return Throughput(str(dev), used, results)
