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
        """Achieved GFLOP/s at this size."""
        return 2 * self.size**3 / self.seconds / 1e9


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
    """``torch.get_num_threads()`` during the probe."""
    results: dict[str, DtypeThroughput] = field(default_factory=dict)
    """Measured dtypes; a dtype the device refused is absent."""

    def ratio(self, dtype: str, base: str = "fp32") -> tuple[float, int] | None:
        """``dtype``'s GFLOP/s over ``base``'s at the largest size both measured, with that size.

        Comparing at one size matters: fp16 on a CPU is only measured at a small size, and
        small sizes run below peak for every dtype.
        """
        a, b = self.results.get(dtype), self.results.get(base)
        if a is None or b is None:
            return None
        common = sorted({p.size for p in a.points} & {p.size for p in b.points})
        if not common:
            return None
        pa, pb = a.at(common[-1]), b.at(common[-1])
        assert pa is not None and pb is not None
        return pa.gflops / pb.gflops, common[-1]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn: Callable[[], object], device: torch.device) -> float:
    _sync(device)
    start = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - start


def _probe_dtype(
    device: torch.device,
    dtype: torch.dtype,
    budget_s: float,
    sizes: Sequence[int],
    repeats: int,
    min_size: int,
) -> list[MatmulPoint]:
    points: list[MatmulPoint] = []
    spent = 0.0
    for size in sizes:
        if points and size > min_size:
            # Predict this size from the last one (work grows as n³) and stop before overrunning;
            # the fastest call, not the median, so one descheduled call on a shared machine
            # does not stop the growth at a size too small to be representative.
            last = points[-1]
            predicted = last.fastest * (size / last.size) ** 3 * (repeats + 1)
            if spent + predicted > budget_s:
                break
        a = torch.randn(size, size, device=device).to(dtype)
        b = torch.randn(size, size, device=device).to(dtype)
        product = functools.partial(torch.matmul, a, b)
        warm = _timed(product, device)
        spent += warm
        n = max(1, min(repeats, int((budget_s - spent) / max(warm, 1e-9))))
        times = [_timed(product, device) for _ in range(n)]
        spent += sum(times)
        points.append(MatmulPoint(size, statistics.median(times), min(times), n))
        if spent > budget_s and size >= min_size:
            break
    return points


def measure_matmul(
    device: torch.device | str = "cpu",
    *,
    dtypes: Sequence[str] = PROBE_DTYPES,
    budget_s: float = 2.0,
    sizes: Sequence[int] = (128, 256, 512, 1024, 2048),
    repeats: int = 3,
    min_size: int = 256,
    tf32_available: bool = False,
) -> Throughput:
    """Time square matmuls per dtype within about ``budget_s`` seconds in all.

    ``tf32`` is measured only when ``tf32_available`` (else it would repeat fp32). Each dtype
    gets an equal share of the budget, but every dtype is measured up to ``min_size`` (a 256²
    fp16 matmul takes under 0.1 s even where fp16 is emulated) so that ratios are never taken
    on overhead-dominated sizes alone. A dtype the device rejects is left out.
    """
    dev = torch.device(device)
    wanted = [d for d in dtypes if d != "tf32" or tf32_available]
    share = budget_s / max(1, len(wanted))
    results: dict[str, DtypeThroughput] = {}
    matmul = torch.backends.cuda.matmul
    saved = (matmul.allow_tf32, torch.get_float32_matmul_precision())
    # Untimed: thread-pool start-up and lazy init would otherwise be charged to the first dtype.
    _timed(lambda: torch.ones(64, 64, device=dev) @ torch.ones(64, 64, device=dev), dev)
    try:
        for name in wanted:
            matmul.allow_tf32 = name == "tf32"
            torch.set_float32_matmul_precision("high" if name == "tf32" else "highest")
            dtype = DTYPES["fp32" if name == "tf32" else name]
            try:
                points = _probe_dtype(dev, dtype, share, sizes, repeats, min_size)
            except (RuntimeError, TypeError):  # e.g. fp64 on MPS
                continue
            if points:
                results[name] = DtypeThroughput(name, tuple(points))
    finally:
        matmul.allow_tf32 = saved[0]
        torch.set_float32_matmul_precision(saved[1])
    return Throughput(str(dev), torch.get_num_threads(), results)
