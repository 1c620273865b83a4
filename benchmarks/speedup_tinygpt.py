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

    .venv/bin/python benchmarks/speedup_tinygpt.py [--batch-size 16 --steps 30 --warmup 5]
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
from ampkit.tasks import TaskSpec, build_task


def hand_written(batch_size: int, steps: int, warmup: int, block: int) -> dict[str, float]:
    """Median step time (s) of fp32 and bf16-autocast loops, interleaved in blocks of ``block`` steps."""
    task = build_task("tinygpt", TaskSpec(seed=0, batch_size=batch_size))
    arms = {}
    for name, dtype in (("fp32", None), ("bf16-mixed", torch.bfloat16)):
        model = copy.deepcopy(task.model)  # identical initial weights in both loops
        arms[name] = (
            model,
            torch.optim.AdamW(model.parameters(), lr=task.default_lr, weight_decay=0.01),
            dtype,
        )
    times: dict[str, list[float]] = {name: [] for name in arms}
    done = dict.fromkeys(arms, 0)
    while min(done.values()) < steps:
        for name, (model, optimizer, dtype) in arms.items():
            for _ in range(min(block, steps - done[name])):
                inputs, targets = task.train_batch(done[name])  # same batch i in both loops
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


def via_compare(batch_size: int, steps: int, warmup: int) -> dict[str, float]:
    """Median step times (s) that ``ampkit compare`` reports for the same settings."""
    out = Path(tempfile.mkdtemp(prefix="speedup_tinygpt_"))
    cmd = [sys.executable, "-m", "ampkit", "compare", "--task", "tinygpt", "--precisions", "fp32,bf16-mixed",
           "--batch-size", str(batch_size), "--steps", str(steps), "--warmup-steps", str(warmup), "--out", str(out)]  # fmt: skip
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    study = json.loads((out / "results.json").read_text())
    return {a["mode"]: a["summary"]["step_time_median_s"]["value"] for a in study["arms"] if a.get("summary")}


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
    args = parser.parse_args()
    caps = device_capabilities("cpu")
    bf16 = "avx512_bf16" if "avx512_bf16" in caps.cpu_flags else "no avx512_bf16"
    print(f"machine: {caps.name} ({bf16}), {os.cpu_count()} CPUs, torch {torch.__version__}, {torch.get_num_threads()} threads; "
          f"tinygpt batch {args.batch_size}, {args.steps} steps ({args.warmup} warm-up); "
          f"load average before {os.getloadavg()[0]:.1f}")  # fmt: skip
    hand_speedups, comp_speedups = [], []
    for repeat in range(args.repeats):
        hand = hand_written(args.batch_size, args.steps, args.warmup, args.block)
        comp = via_compare(args.batch_size, args.steps, args.warmup)
        hand_speedups.append(hand["fp32"] / hand["bf16-mixed"])
        comp_speedups.append(comp["fp32"] / comp["bf16-mixed"])
        print(f"repeat {repeat + 1}: hand-written fp32 {hand['fp32'] * 1e3:.0f} ms, bf16 autocast "
              f"{hand['bf16-mixed'] * 1e3:.0f} ms ({hand_speedups[-1]:.2f}x); ampkit compare fp32 "
              f"{comp['fp32'] * 1e3:.0f} ms, bf16-mixed {comp['bf16-mixed'] * 1e3:.0f} ms ({comp_speedups[-1]:.2f}x)")  # fmt: skip
    s_hand, s_comp = statistics.median(hand_speedups), statistics.median(comp_speedups)
    ratio = s_comp / s_hand
    print(f"median speedup bf16-mixed/fp32 over {args.repeats} repeats: hand-written {s_hand:.2f}x, "
          f"ampkit compare {s_comp:.2f}x, ratio {ratio:.3f} ({'within' if abs(ratio - 1) <= 0.10 else 'OUTSIDE'} 10%); "
          f"load average after {os.getloadavg()[0]:.1f}")  # fmt: skip


if __name__ == "__main__":
    main()
