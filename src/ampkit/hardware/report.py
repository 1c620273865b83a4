"""The ``ampkit doctor`` report as plain data: facts, support matrix, measurement, recommendation.

:func:`doctor_report` gathers everything; the result is JSON-ready (schema
``ampkit.doctor/1``, documented field by field in ``docs/doctor.md``) and the CLI renders
the same dict as rich tables, so the two outputs cannot disagree.
"""

from __future__ import annotations

import os
from typing import Any

import torch

from .capabilities import DeviceCaps, device_capabilities
from .memory import memory_advice
from .recommend import MIN_SPEEDUP, recommend
from .support import support_matrix
from .throughput import Throughput, measure_matmul

SCHEMA = "ampkit.doctor/1"

#: CPU flags that matter for number formats (the rest of /proc/cpuinfo is noise here).
RELEVANT_FLAGS = frozenset(
    {"avx2", "fma", "f16c", "avx512f", "avx512_bf16", "avx512_fp16", "avx512_vnni", "avx_vnni"}
    | {"amx_tile", "amx_bf16", "amx_fp16", "amx_int8"}
)


def _device_facts(caps: DeviceCaps) -> dict[str, Any]:
    flags = sorted(caps.cpu_flags & RELEVANT_FLAGS)
    cc = list(caps.compute_capability) if caps.compute_capability else None
    return {
        "type": caps.device_type,
        "name": caps.name,
        "compute_capability": cc,
        "total_memory_bytes": caps.total_memory_bytes,
        "cpu_flags": flags,
    }


def _load_average() -> float | None:
    try:
        return os.getloadavg()[0]
    except (OSError, AttributeError):  # not on Windows
        return None


def probe_threads(device: torch.device, load: float | None) -> int | None:
    """1 on a CPU whose cores are taken by other jobs, else ``None`` (torch's setting).

    With every core busy, each multi-threaded matmul waits for its slowest thread to get a
    core, and a 2-second probe measures the scheduler, not the dtype: on the 2-core dev
    machine under load, 2-thread bf16/fp32 ratios ranged 1-6x while 1-thread ones stayed
    2.3-2.7x. The ratio, not the absolute speed, is what the recommendation needs.
    """
    cores = os.cpu_count() or 1
    if device.type != "cpu" or load is None or load + torch.get_num_threads() <= cores:
        return None
    return 1


def _throughput_dict(throughput: Throughput, budget_s: float, load: float | None) -> dict[str, Any]:
    results = {}
    for name, result in throughput.results.items():
        best, ratio = result.best, throughput.ratio(name)
        results[name] = {
            "size": best.size,
            "gflops": round(best.gflops, 2),
            "best_gflops": round(best.best_gflops, 2),
            "seconds": best.seconds,
            "fastest_seconds": best.fastest,
            "repeats": best.repeats,
            "ratio_to_fp32": None if ratio is None else round(ratio[0], 4),
            "ratio_size": None if ratio is None else ratio[1],
            "points": [
                {
                    "size": p.size,
                    "gflops": round(p.gflops, 2),
                    "best_gflops": round(p.best_gflops, 2),
                    "seconds": p.seconds,
                    "fastest_seconds": p.fastest,
                    "repeats": p.repeats,
                }
                for p in result.points
            ],
        }
    return {
        "device": throughput.device,
        "threads": throughput.threads,
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "load_average": load,
        "budget_s": budget_s,
        "results": results,
    }


def doctor_report(device: torch.device | str = "cpu", *, budget_s: float = 2.0) -> dict[str, Any]:
    """Everything ``ampkit doctor`` shows for ``device``; ``budget_s=0`` skips the measurement."""
    dev = torch.device(device)
    caps = device_capabilities(dev)
    devices = [_device_facts(device_capabilities("cpu"))]
    if dev.type != "cpu":
        devices.append(_device_facts(caps))
    load = _load_average()  # before the probe, which itself loads the machine
    threads = probe_threads(dev, load)
    throughput = (
        measure_matmul(dev, budget_s=budget_s, tf32_available=caps.tf32_in_hardware, threads=threads)
        if budget_s > 0
        else None
    )
    rec = recommend(caps, throughput)
    advice = memory_advice(caps.total_memory_bytes, rec.mode) if caps.is_cuda else None
    return {
        "schema": SCHEMA,
        "torch": torch.__version__,
        "target": str(dev),
        "devices": devices,
        "support": {name: {"level": s.level, "why": s.why} for name, s in support_matrix(caps).items()},
        "throughput": None if throughput is None else _throughput_dict(throughput, budget_s, load),
        "recommendation": {
            "mode": rec.mode,
            "tree_mode": rec.tree_mode,
            "corrected": rec.corrected,
            "reason": rec.reason,
            "facts": rec.facts,
            "min_speedup": MIN_SPEEDUP,
        },
        "memory_advice": None
        if advice is None
        else {
            "memory_gib": round(advice.memory_gib, 1),
            "tier": advice.tier,
            "advice": advice.advice,
            "max_params_mixed": advice.max_params_mixed,
            "max_params_true": advice.max_params_true,
            "line": advice.line(),
        },
    }
