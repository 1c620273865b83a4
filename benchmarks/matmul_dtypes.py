"""Careful matmul throughput per dtype on this machine: the long form of ``ampkit doctor``'s probe.

Square n x n matmuls, 2·n³ FLOPs each. fp32, bf16 and fp64 at 512..2048; fp16 only at small
sizes, because on a CPU without fp16 units a 2048² fp16 matmul takes tens of seconds. Per
size: two warm-up calls per dtype excluded, then the dtypes planned at that size take turns,
one timed call each (a device synchronise around each), until ``--seconds`` per dtype have
passed or ``--repeats`` rounds ran, at least 3; the median, min and max GFLOP/s are printed, with ratios to fp32 at the same size and the machine named. Timings on a
shared machine are noisy: run it when the machine is idle, and more than once.

    python benchmarks/matmul_dtypes.py [--device cpu|cuda] [--seconds 1.0] [--repeats 20] [--json out.json]
"""

from __future__ import annotations

import argparse
import functools
import json
import platform
import statistics
import time
from pathlib import Path

import torch

from ampkit.hardware import device_capabilities
from ampkit.precision import DTYPES

BIG = (512, 1024, 2048)
#: dtype -> sizes. fp16 stays small on CPUs (emulated there); on GPUs it gets the big sizes.
PLAN_CPU = {"fp32": (128, 256, *BIG), "bf16": BIG, "fp64": BIG, "fp16": (128, 256, 512)}
PLAN_GPU = {"fp32": BIG, "tf32": BIG, "bf16": BIG, "fp16": BIG, "fp64": BIG}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_size(
    device: torch.device, names: list[str], size: int, seconds: float, repeats: int
) -> dict[str, dict]:
    """Median/min/max GFLOP/s of an n x n matmul per dtype (``tf32`` = fp32 with TF32 on).

    The dtypes take turns call by call, so load from other jobs hits them alike.
    """
    products = {}
    for name in names:
        dtype = DTYPES["fp32" if name == "tf32" else name]
        a = torch.randn(size, size, device=device).to(dtype)
        b = torch.randn(size, size, device=device).to(dtype)
        products[name] = functools.partial(torch.matmul, a, b)
        torch.backends.cuda.matmul.allow_tf32 = name == "tf32"
        for _ in range(2):
            products[name]()
    times: dict[str, list[float]] = {name: [] for name in names}
    start = time.perf_counter()
    while len(times[names[0]]) < 3 or (
        len(times[names[0]]) < repeats and time.perf_counter() - start < seconds * len(names)
    ):
        for name in names:
            torch.backends.cuda.matmul.allow_tf32 = name == "tf32"
            _sync(device)
            t0 = time.perf_counter()
            products[name]()
            _sync(device)
            times[name].append(time.perf_counter() - t0)
    flops = 2 * size**3 / 1e9
    return {
        name: {
            "median_gflops": flops / statistics.median(taken),
            "min_gflops": flops / max(taken),
            "max_gflops": flops / min(taken),
            "calls": len(taken),
        }
        for name, taken in times.items()
    }


def main() -> None:
    """Run the plan for the device and print the table (optionally write JSON)."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--seconds", type=float, default=1.0, help="time per point (at least 3 calls)")
    parser.add_argument("--repeats", type=int, default=20, help="at most this many timed calls per point")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()
    device = torch.device(args.device)
    caps = device_capabilities(device)
    plan = PLAN_GPU if device.type == "cuda" else PLAN_CPU
    if not caps.tf32_in_hardware:
        plan = {k: v for k, v in plan.items() if k != "tf32"}
    machine = f"{caps.name} ({device}), torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.node()}"
    print(f"matmul throughput on {machine}")
    results: dict[str, dict[int, dict[str, float]]] = {name: {} for name in plan}
    for size in sorted({size for sizes in plan.values() for size in sizes}):
        names = [name for name, sizes in plan.items() if size in sizes]
        for name, stats in time_size(device, names, size, args.seconds, args.repeats).items():
            results[name][size] = stats
    torch.backends.cuda.matmul.allow_tf32 = False
    print(f"{'dtype':<6}{'size':>7}{'median GFLOP/s':>16}{'min':>9}{'max':>9}{'calls':>7}{'vs fp32':>10}")
    for name, by_size in results.items():
        for size, r in by_size.items():
            base = results["fp32"].get(size)
            ratio = f"{r['median_gflops'] / base['median_gflops']:.3g}x" if base else "-"
            print(
                f"{name:<6}{size:>6}²{r['median_gflops']:>16.1f}{r['min_gflops']:>9.1f}{r['max_gflops']:>9.1f}"
                f"{r['calls']:>7}{ratio:>10}"
            )
    if args.json:
        args.json.write_text(json.dumps({"machine": machine, "results": results}, indent=2))


if __name__ == "__main__":
    main()
