"""ampkit's step time over a hand-written torch.amp loop's: same model, data and order.

Four loops train identical copies of ``tinygpt`` under bf16-mixed on the CPU:
  hand    — torch.autocast + torch.amp.GradScaler(enabled=False) + AdamW, written out by hand
  api     — ampkit's public API (Precision.autocast, PrecisionOptimizer.backward/step) with its
            defaults: the non-finite gradient check on (skip_nonfinite=True)
  nocheck — the same with skip_nonfinite=False
  engine  — ampkit.engine.run_step (fp32 loss, sync context, records), grad-norm tracking off
hand, api and engine run interleaved in rounds, the order rotating each round, so drift of the
machine and position in a round hit all alike; each figure is the median over all timed steps,
warm-up excluded. What the non-finite check costs is measured twice: api and nocheck steps
alternate one by one (who goes first alternating too) and ``on/off`` is the median of the
per-pair ratios, robust to load that changes over seconds; and the check alone (one fused
max-abs reduction over tinygpt's gradients plus one host sync) is timed against the api step.

    python benchmarks/overhead.py [--rounds 12] [--steps 8] [--batch-size 16] [--precision bf16-mixed]
    python benchmarks/overhead.py --check-only     # only the api/nocheck pairs and the check alone
"""

from __future__ import annotations

import argparse
import copy
import platform
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from ampkit.engine import RunSetup, TrainConfig, build_run, run_step
from ampkit.hardware import device_capabilities
from ampkit.optim import PrecisionOptimizer, grads_finite
from ampkit.precision import Precision


def api_loop(run: RunSetup, skip_nonfinite: bool) -> tuple[Callable[[int], None], torch.nn.Module]:
    """One step of ampkit's public API on a private copy of the run's model."""
    precision, task, config = run.precision, run.task, run.config
    model = copy.deepcopy(run.model)
    adamw = torch.optim.AdamW(model.parameters(), lr=task.default_lr, weight_decay=config.weight_decay)
    opt = PrecisionOptimizer(adamw, precision, skip_nonfinite=skip_nonfinite)

    def step(i: int) -> None:
        inputs, targets = task.train_batch(i)
        with precision.autocast():
            logits = model(precision.cast_inputs(inputs))
        loss = F.cross_entropy(logits.float().flatten(0, 1), targets.flatten())
        opt.backward(loss)
        opt.step()
        loss.item()

    return step, model


def hand_loop(run: RunSetup) -> Callable[[int], None]:
    """The textbook torch.amp loop."""
    precision, task, config = run.precision, run.task, run.config
    model = copy.deepcopy(run.model)
    adamw = torch.optim.AdamW(model.parameters(), lr=task.default_lr, weight_decay=config.weight_decay)
    scaler = torch.amp.GradScaler("cpu", enabled=precision.spec.grad_scaler)
    dtype = precision.spec.autocast_dtype

    def step(i: int) -> None:
        inputs, targets = task.train_batch(i)
        with torch.autocast("cpu", dtype=dtype or torch.bfloat16, enabled=dtype is not None):
            logits = model(inputs)
        loss = F.cross_entropy(logits.float().flatten(0, 1), targets.flatten())
        scaler.scale(loss).backward()
        scaler.step(adamw)
        scaler.update()
        adamw.zero_grad(set_to_none=True)
        loss.item()

    return step


def timed(step: Callable[[int], None], i: int) -> float:
    began = time.perf_counter()
    step(i)
    return time.perf_counter() - began


def compare_loops(run: RunSetup, args: argparse.Namespace) -> dict[str, list[float]]:
    """hand / api / engine in rotating blocks of ``args.steps`` steps."""
    loops: dict[str, Callable[[int], None]] = {
        "hand": hand_loop(run),
        "api": api_loop(run, skip_nonfinite=True)[0],
        "engine": lambda i: run_step(run, i)[0].item() and None,
    }
    counters = dict.fromkeys(loops, 0)
    times: dict[str, list[float]] = {name: [] for name in loops}
    for name, step in loops.items():
        for _ in range(args.warmup):
            step(counters[name])
            counters[name] += 1
    names = list(loops)
    for r in range(args.rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:  # position biases no loop
            for _ in range(args.steps):
                times[name].append(timed(loops[name], counters[name]))
                counters[name] += 1
    return times


def compare_check(run: RunSetup, args: argparse.Namespace) -> tuple[list[float], list[float], float]:
    """api vs nocheck step by step; and the check alone on real gradients (median seconds)."""
    on, model = api_loop(run, skip_nonfinite=True)
    off, _ = api_loop(run, skip_nonfinite=False)
    for i in range(args.warmup):
        on(i)
        off(i)
    times_on: list[float] = []
    times_off: list[float] = []
    for k in range(args.rounds * args.steps):
        i = args.warmup + k
        if k % 2:
            times_off.append(timed(off, i))
            times_on.append(timed(on, i))
        else:
            times_on.append(timed(on, i))
            times_off.append(timed(off, i))
    inputs, targets = run.task.train_batch(0)
    with run.precision.autocast():
        logits = model(run.precision.cast_inputs(inputs))
    F.cross_entropy(logits.float().flatten(0, 1), targets.flatten()).backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    alone = []
    for _ in range(max(20, args.rounds * args.steps)):
        began = time.perf_counter()
        assert grads_finite(grads)
        alone.append(time.perf_counter() - began)
    return times_on, times_off, statistics.median(alone)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--task", default="tinygpt")
    parser.add_argument("--precision", default="bf16-mixed")
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--steps", type=int, default=8, help="timed steps per loop per round")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--check-only", action="store_true", help="only measure the non-finite check")
    args = parser.parse_args()

    config = TrainConfig(task=args.task, precision=args.precision, batch_size=args.batch_size, device="cpu",
                         track_grad_norm=False, progress=False)  # fmt: skip
    run = build_run(config)
    precision: Precision = run.precision
    with precision.scope():
        times = {} if args.check_only else compare_loops(run, args)
        check_on, check_off, alone = compare_check(run, args)

    caps = device_capabilities("cpu")
    print(f"machine: {caps.name}, {torch.get_num_threads()} threads, torch {torch.__version__}, "
          f"python {platform.python_version()}")  # fmt: skip
    print(f"task {args.task}, {precision.name}, batch {args.batch_size}, "
          f"{args.rounds} rounds x {args.steps} steps per loop, interleaved, warm-up {args.warmup} excluded")  # fmt: skip
    times.update({"api-pair": check_on, "nocheck": check_off})
    hand = statistics.median(times["hand"]) if "hand" in times else None
    for name, values in times.items():
        med = statistics.median(values)
        p90 = statistics.quantiles(values, n=10)[-1]
        vs = f"  ratio vs hand {med / hand:.4f}" if hand else ""
        print(f"{name:8s} median {med * 1e3:8.2f} ms  p90 {p90 * 1e3:8.2f} ms{vs}")
    if hand:
        print(f"overhead api/hand = {statistics.median(times['api']) / hand:.4f} (target <= 1.01)")
        print(f"overhead engine/hand = {statistics.median(times['engine']) / hand:.4f}")
    paired = statistics.median(a / b for a, b in zip(check_on, check_off))
    step = statistics.median(check_on)
    print(f"nonfinite check on/off = {paired:.4f}x (median of {len(check_on)} paired steps; target <= 1.01x)")
    print(f"nonfinite check alone = {alone * 1e3:.3f} ms = {alone / step:.2%} of the api step (median)")


if __name__ == "__main__":
    main()
