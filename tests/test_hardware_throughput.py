"""The time-boxed matmul probe: real timings on tiny sizes, ratio bookkeeping on fixed numbers."""

from __future__ import annotations

import os
import time

import torch

from ampkit.hardware import DtypeThroughput, MatmulPoint, Throughput, measure_matmul
from ampkit.hardware.report import probe_threads


def point(size: int, gflops: float) -> MatmulPoint:
    seconds = 2 * size**3 / (gflops * 1e9)
    return MatmulPoint(size, seconds, seconds, 3)


def test_gflops_from_size_and_time() -> None:
    assert abs(MatmulPoint(1000, 0.01, 0.01, 3).gflops - 200.0) < 1e-9


def test_ratio_is_taken_at_the_largest_common_size() -> None:
    fp32 = DtypeThroughput("fp32", (point(256, 100), point(512, 150), point(1024, 200)))
    fp16 = DtypeThroughput("fp16", (point(256, 1), point(512, 0.5)))
    tp = Throughput("cpu", 2, {"fp32": fp32, "fp16": fp16})
    ratio, size = tp.ratio("fp16") or (0.0, 0)
    assert size == 512 and abs(ratio - 0.5 / 150) < 1e-9
    assert tp.ratio("bf16") is None
    assert fp32.best.size == 1024 and fp16.at(1024) is None


def test_probe_is_time_boxed_and_keeps_fp16_small() -> None:
    threads = torch.get_num_threads()
    start = time.perf_counter()
    tp = measure_matmul("cpu", dtypes=("fp32", "bf16", "fp16", "tf32"), budget_s=0.45)
    elapsed = time.perf_counter() - start
    assert elapsed < 4.0  # budget plus one overshooting size at most, on a shared 2-core machine
    assert tp.threads == threads == torch.get_num_threads()  # no threads= given: torch's setting
    assert set(tp.results) == {"fp32", "bf16", "fp16"}  # tf32 only where it exists
    for result in tp.results.values():
        sizes = [p.size for p in result.points]
        assert sizes == sorted(sizes) and sizes[0] == 256 and sizes[-1] >= 512  # always up to min_size
        assert all(p.gflops > 0 and p.repeats >= 1 and p.fastest <= p.seconds for p in result.points)
    assert tp.results["fp16"].best.size <= 512  # emulated fp16 never grows to a big matmul
    assert tp.ratio("fp32") == (1.0, tp.results["fp32"].best.size)


def test_probe_restores_tf32_flags() -> None:
    before = (torch.backends.cuda.matmul.allow_tf32, torch.get_float32_matmul_precision())
    measure_matmul("cpu", dtypes=("fp32",), budget_s=0.05, sizes=(64, 128), min_size=64)
    assert (torch.backends.cuda.matmul.allow_tf32, torch.get_float32_matmul_precision()) == before


def test_probe_threads_setting_is_used_and_restored() -> None:
    threads = torch.get_num_threads()
    tp = measure_matmul("cpu", dtypes=("fp32",), budget_s=0.25, sizes=(64,), min_size=64, threads=1)
    assert tp.threads == 1 and torch.get_num_threads() == threads


def test_busy_cpu_is_probed_on_one_thread() -> None:
    cores = os.cpu_count() or 1
    assert probe_threads(torch.device("cpu"), load=cores + 1.0) == 1
    assert probe_threads(torch.device("cpu"), load=None) is None
    assert probe_threads(torch.device("cpu"), load=-float(torch.get_num_threads())) is None  # idle
    assert probe_threads(torch.device("cuda"), load=cores + 1.0) is None
