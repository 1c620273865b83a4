"""Does `ampkit compare` report the bf16-mixed/fp32 speedup a hand-written loop sees? (tinygpt, CPU)

1. Plain PyTorch loops, no ampkit in the timed code: the same TinyGPT (the task factory builds
   it), the same batches, AdamW, fp32 vs ``torch.autocast("cpu", torch.bfloat16)``. The two
   loops run interleaved in blocks of steps (fp32 block, bf16 block, ...) so machine noise
   hits both alike; each step is timed whole (zero_grad, forward, loss, backward, step,
   ``.item()``) and the median over the post-warm-up steps is taken.
2. ``ampkit compare --task tinygpt --precisions fp32,bf16-mixed`` with the same batch size,
   steps and warm-up (each arm in its own process).

Both are repeated ``--repeats`` times (alternating), since one run of either on a shared 2-core
machine can be off by 20%; prints each pair and the ratio of the median speedups (acceptance:
within 10%), with the load average beside the figures.

``--compile`` adds the compiled loops: ``torch.compile(model)`` (inductor) in the hand-written
loops, interleaved with the eager ones, and ``ampkit compare --compile both``; it prints eager and
compiled step time per mode and bf16-mixed+compile over fp32+compile (acceptance on CPUs with
avx512_bf16: >= 2.0x). The limit of any bf16 speedup is the raw bf16/fp32 matmul ratio of this
machine, measured here and printed, with the CPU's flags (avx512_bf16, AMX).

    .venv/bin/python benchmarks/speedup_tinygpt.py [--batch-size 16 --steps 30 --warmup 5] [--compile]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from ampkit.hardware import device_capabilities
from ampkit.hardware.throughput import measure_matmul
from ampkit.tasks import TaskSpec, build_task


def hand_written(
    batch_size: int, steps: int, warmup: int, block: int, compiled: bool = False
) -> dict[str, float]:
    """Median step time (s) of fp32 and bf16-autocast loops (and their ``torch.compile``d twins),
    interleaved in blocks of ``block`` steps; the warm-up, where the compile happens, is excluded."""
    task = build_task("tinygpt", TaskSpec(seed=0, batch_size=batch_size))
    arms = {}
    for name, dtype in (("fp32", None), ("bf16-mixed", torch.bfloat16)):
        for compile_it in (False, True) if compiled else (False,):
            model = copy.deepcopy(task.model)  # identical initial weights in every loop
            arms[name + ("+compile" if compile_it else "")] = (
                torch.compile(model) if compile_it else model,
                torch.optim.AdamW(model.parameters(), lr=task.default_lr, weight_decay=0.01),
                dtype,
            )
    times: dict[str, list[float]] = {name: [] for name in arms}
    done = dict.fromkeys(arms, 0)
    while min(done.values()) < steps:
        for name, (model, optimizer, dtype) in arms.items():
            for _ in range(min(block, steps - done[name])):
                inputs, targets = task.train_batch(done[name])  # same batch i in every loop
                began = time.perf_counter()
                optimizer.zero_grad(set_to_none=True)
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype is not None):
                    logits = model(inputs)
                loss = task.loss_fn(logits.float(), targets)  # loss in fp32, as every AMP recipe does
                loss.backward()
                optimizer.step()
                loss.item()
                times[name].append(time.perf_counter() - began)
                done[name] += 1
    return {name: statistics.median(t[warmup:]) for name, t in times.items()}


def via_compare(batch_size: int, steps: int, warmup: int, compiled: bool = False) -> dict[str, float]:
    """Median step times (s) that ``ampkit compare`` reports for the same settings (``--compile both``:
    also the compiled arms, ``MODE+compile``); compile seconds per compiled arm under ``compile_s:MODE``."""
    out = Path(tempfile.mkdtemp(prefix="speedup_tinygpt_"))
    cmd = [sys.executable, "-m", "ampkit", "compare", "--task", "tinygpt", "--precisions", "fp32,bf16-mixed",
           "--batch-size", str(batch_size), "--steps", str(steps), "--warmup-steps", str(warmup), "--out", str(out),
           *(["--compile", "both"] if compiled else [])]  # fmt: skip
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    study = json.loads((out / "results.json").read_text())
    arms = [a for a in study["arms"] if a.get("summary")]
    times = {a["mode"]: a["summary"]["step_time_median_s"]["value"] for a in arms}
    times.update({f"compile_s:{a['mode']}": a["summary"]["compile_time_s"]["value"]
                  for a in arms if "compile_time_s" in a["summary"]})  # fmt: skip
    return times


def matmul_limit() -> str:
    """The raw bf16/fp32 matmul ratio of this CPU: the most any bf16 training speedup can reach."""
    measured = measure_matmul("cpu", dtypes=("fp32", "bf16"), budget_s=3.0)
    ratio = measured.ratio("bf16")
    return "not measured" if ratio is None else f"{ratio[0]:.2f}x at {ratio[1]}²"


def main() -> None:
    """Run both measurements and print the comparison."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--steps", type=int, default=30, help="steps per precision, warm-up included")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--block", type=int, default=5, help="steps per interleaved block")
    parser.add_argument(
        "--repeats", type=int, default=3, help="hand-written + compare pairs; medians are compared"
    )
    parser.add_argument("--compile", action="store_true", help="also the torch.compile'd loops and arms")
    args = parser.parse_args()
    caps = device_capabilities("cpu")
    flags = ", ".join(
        f"{f} {'yes' if f in caps.cpu_flags else 'no'}" for f in ("avx512_bf16", "amx_bf16", "amx_tile")
    )
    print(f"machine: {caps.name} ({flags}), {os.cpu_count()} CPUs, torch {torch.__version__}, {torch.get_num_threads()} threads; "
          f"tinygpt batch {args.batch_size}, {args.steps} steps ({args.warmup} warm-up); "
          f"load average before {os.getloadavg()[0]:.1f}")  # fmt: skip
    print(f"raw bf16/fp32 matmul ratio here (the limit of any bf16 speedup): {matmul_limit()}")
    hand_speedups, comp_speedups, hand_compiled, comp_compiled = [], [], [], []
    for repeat in range(args.repeats):
        hand = hand_written(args.batch_size, args.steps, args.warmup, args.block, args.compile)
        comp = via_compare(args.batch_size, args.steps, args.warmup, args.compile)
        hand_speedups.append(hand["fp32"] / hand["bf16-mixed"])
        comp_speedups.append(comp["fp32"] / comp["bf16-mixed"])
        print(f"repeat {repeat + 1}: hand-written fp32 {hand['fp32'] * 1e3:.0f} ms, bf16 autocast "
              f"{hand['bf16-mixed'] * 1e3:.0f} ms ({hand_speedups[-1]:.2f}x); ampkit compare fp32 "
              f"{comp['fp32'] * 1e3:.0f} ms, bf16-mixed {comp['bf16-mixed'] * 1e3:.0f} ms ({comp_speedups[-1]:.2f}x)")  # fmt: skip
        if args.compile:
            hand_compiled.append(hand["fp32+compile"] / hand["bf16-mixed+compile"])
            comp_compiled.append(comp["fp32+compile"] / comp["bf16-mixed+compile"])
            print(f"repeat {repeat + 1} compiled: hand-written fp32+compile {hand['fp32+compile'] * 1e3:.0f} ms, "
                  f"bf16+compile {hand['bf16-mixed+compile'] * 1e3:.0f} ms ({hand_compiled[-1]:.2f}x); ampkit compare "
                  f"fp32+compile {comp['fp32+compile'] * 1e3:.0f} ms, bf16-mixed+compile "
                  f"{comp['bf16-mixed+compile'] * 1e3:.0f} ms ({comp_compiled[-1]:.2f}x); compile time "
                  f"{comp['compile_s:fp32+compile']:.1f} s / {comp['compile_s:bf16-mixed+compile']:.1f} s, "
                  "apart from the step times")  # fmt: skip
    s_hand, s_comp = statistics.median(hand_speedups), statistics.median(comp_speedups)
    ratio = s_comp / s_hand
    print(f"median speedup bf16-mixed/fp32 over {args.repeats} repeats: hand-written {s_hand:.2f}x, "
          f"ampkit compare {s_comp:.2f}x, ratio {ratio:.3f} ({'within' if abs(ratio - 1) <= 0.10 else 'OUTSIDE'} 10%); "
          f"load average after {os.getloadavg()[0]:.1f}")  # fmt: skip
    if args.compile:
        c_hand, c_comp = statistics.median(hand_compiled), statistics.median(comp_compiled)
        target = (
            "target >= 2.0x" if "avx512_bf16" in caps.cpu_flags else "no target: this CPU lacks avx512_bf16"
        )
        print(f"median speedup bf16-mixed+compile/fp32+compile: hand-written {c_hand:.2f}x, ampkit compare "
              f"{c_comp:.2f}x ({target}; limit: the raw matmul ratio above)")  # fmt: skip


if __name__ == "__main__":
    main()
