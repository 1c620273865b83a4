"""ampkit's step time over a hand-written torch.amp loop's: same model, data and order, eager and compiled.

Per precision (default ``auto``: fp32 and the fastest 16-bit mixed mode of this machine, chosen by
a matmul measurement), identical copies of ``tinygpt`` train in these loops:
  hand    — torch.autocast + torch.amp.GradScaler + AdamW, written out by hand
  api     — ampkit's public API (Precision.autocast, PrecisionOptimizer.backward/step) with its
            defaults: the non-finite gradient check on (skip_nonfinite=True)
  nocheck — the same with skip_nonfinite=False
  engine  — ampkit.engine.run_step (fp32 loss, sync context, records), grad-norm tracking off
and, with ``--compile on|both`` (default both), ``hand+compile`` (``torch.compile(model)``),
``api+compile`` (``prec.compile(model)``) and ``engine+compile`` (``TrainConfig(compile=True)``):
the same model under the same compile settings (inductor, torch.compile's defaults).
All loops of one precision run interleaved in rounds (by default one step each), the order rotating
each round, so drift of the machine and position in a round hit all alike; each figure is the median
over all timed steps, warm-up (where the compile happens) excluded, and each ratio is given twice:
the ratio of the medians and the median of the per-round ratios (robust to load that changes). What the non-finite check costs is measured twice:
api and nocheck steps alternate one by one (who goes first alternating too) and ``on/off`` is the
median of the per-pair ratios, robust to load that changes over seconds; and the check alone (one
fused max-abs reduction over tinygpt's gradients plus one host sync) is timed against the api step.

    python benchmarks/overhead.py [--rounds 60] [--steps 1] [--batch-size 16] [--precisions auto] [--compile both]
    python benchmarks/overhead.py --check-only     # only the api/nocheck pairs and the check alone
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import os
import platform
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from ampkit.engine import RunSetup, TrainConfig, build_run, run_step
from ampkit.hardware import device_capabilities
from ampkit.hardware.throughput import measure_matmul
from ampkit.optim import PrecisionOptimizer, grads_finite
from ampkit.precision import Precision


def api_loop(
    run: RunSetup, skip_nonfinite: bool, compiled: bool = False
) -> tuple[Callable[[int], None], torch.nn.Module]:
    """One step of ampkit's public API on a private copy of the run's model (``prec.compile``d)."""
    precision, task, config = run.precision, run.task, run.config
    model = copy.deepcopy(run.model)
    if compiled:
        precision.compile(model)
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


def hand_loop(run: RunSetup, compiled: bool = False) -> Callable[[int], None]:
    """The textbook torch.amp loop (with ``model = torch.compile(model)``, the textbook compile)."""
    precision, task, config = run.precision, run.task, run.config
    model = copy.deepcopy(run.model)
    adamw = torch.optim.AdamW(model.parameters(), lr=task.default_lr, weight_decay=config.weight_decay)
    kind = precision.device.type
    scaler = torch.amp.GradScaler(kind, enabled=precision.spec.grad_scaler)
    dtype = precision.spec.autocast_dtype
    forward = torch.compile(model) if compiled else model

    def step(i: int) -> None:
        inputs, targets = task.train_batch(i)
        with torch.autocast(kind, dtype=dtype or torch.bfloat16, enabled=dtype is not None):
            logits = forward(inputs)
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


def make_loops(config: TrainConfig, compile_arg: str) -> dict[str, Callable[[int], None]]:
    """hand / api / engine, eager and/or compiled, each on its own copy of the same initial model."""
    run = build_run(config)
    loops: dict[str, Callable[[int], None]] = {}
    for compiled in {"off": (False,), "on": (True,), "both": (False, True)}[compile_arg]:
        suffix = "+compile" if compiled else ""
        engine_run = build_run(dataclasses.replace(config, compile=True)) if compiled else run
        loops[f"hand{suffix}"] = hand_loop(run, compiled)
        loops[f"api{suffix}"] = api_loop(run, skip_nonfinite=True, compiled=compiled)[0]
        loops[f"engine{suffix}"] = lambda i, r=engine_run: run_step(r, i)[0].item() and None
    return loops


def compare_loops(
    loops: dict[str, Callable[[int], None]], args: argparse.Namespace
) -> dict[str, list[float]]:
    """All ``loops`` in rotating blocks of ``args.steps`` steps, after ``args.warmup`` steps each."""
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


def fastest_16bit(device: str) -> tuple[str, str]:
    """The 16-bit mixed mode whose matmul measured fastest here (bf16 or fp16), with the measurement."""
    measured = measure_matmul(device, dtypes=("fp32", "bf16", "fp16"), budget_s=3.0)
    ratios = {d: r for d in ("bf16", "fp16") if (r := measured.ratio(d)) is not None}
    best = max(ratios, key=lambda d: ratios[d][0])
    text = ", ".join(f"{d} {r:.2f}x fp32 at {n}²" for d, (r, n) in ratios.items())
    return f"{best}-mixed", f"matmul measured here: {text}"


def report(mode: str, times: dict[str, list[float]]) -> None:
    """Median and p90 per loop; ampkit's loops over the hand-written one with the same compile setting."""
    for name, values in times.items():
        med = statistics.median(values)
        p90 = statistics.quantiles(values, n=10)[-1]
        hand = times.get("hand+compile" if name.endswith("+compile") else "hand")
        vs = (
            f"  ratio vs {'hand+compile' if name.endswith('+compile') else 'hand'} {med / statistics.median(hand):.4f}"
            if hand
            else ""
        )
        print(f"{mode:10s} {name:15s} median {med * 1e3:8.2f} ms  p90 {p90 * 1e3:8.2f} ms{vs}")
    for suffix in ("", "+compile"):
        if f"hand{suffix}" not in times:
            continue
        hand = times[f"hand{suffix}"]
        for loop in ("api", "engine"):
            mine = times[f"{loop}{suffix}"]
            ratio = statistics.median(mine) / statistics.median(hand)
            # the i-th steps of two loops ran in the same round, seconds apart: their ratio is robust
            # to load that changes over minutes (the medians' ratio is not)
            paired = statistics.median(a / b for a, b in zip(mine, hand, strict=True))
            target = " (target <= 1.01)" if loop == "api" else ""
            print(f"{mode:10s} overhead {loop}{suffix}/hand{suffix} = {ratio:.4f} (medians), "
                  f"{paired:.4f} (median of {len(hand)} same-round pairs){target}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--task", default="tinygpt")
    parser.add_argument(
        "--precisions",
        default="auto",
        help="comma-separated modes; auto: fp32 and the fastest 16-bit mixed mode measured here",
    )
    parser.add_argument("--compile", default="both", choices=("off", "on", "both"))
    parser.add_argument("--device", default="cpu", help="cpu, or cuda for the GPU suite (make bench-gpu)")
    parser.add_argument("--rounds", type=int, default=60)
    parser.add_argument("--steps", type=int, default=1, help="timed steps per loop per round")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--check-only", action="store_true", help="only measure the non-finite check")
    args = parser.parse_args()

    caps = device_capabilities(args.device)
    flags = [f for f in ("avx512_bf16", "avx512_fp16", "amx_bf16", "amx_tile") if f in caps.cpu_flags]
    cpu_flags = ", ".join(flags) or "no avx512_bf16/avx512_fp16/AMX"
    print(f"machine: {caps.name} ({cpu_flags if caps.device_type == 'cpu' else caps.device_type}), "
          f"{torch.get_num_threads()} threads, torch {torch.__version__}, python {platform.python_version()}; "
          f"load average {os.getloadavg()[0]:.1f}")  # fmt: skip
    if args.precisions == "auto":
        fast, how = fastest_16bit(args.device)
        modes = ["fp32", fast]
        print(f"precisions: fp32 and {fast}, the fastest 16-bit mode here ({how})")
    else:
        modes = [m.strip() for m in args.precisions.split(",") if m.strip()]
    print(f"task {args.task}, batch {args.batch_size}, {args.rounds} rounds x {args.steps} steps per loop, "
          f"interleaved, warm-up {args.warmup} excluded, compile {args.compile}")  # fmt: skip
    for mode in [] if args.check_only else modes:
        config = TrainConfig(task=args.task, precision=mode, batch_size=args.batch_size, device=args.device,
                             track_grad_norm=False, progress=False)  # fmt: skip
        loops = make_loops(config, args.compile)
        with Precision(mode, args.device).scope():
            times = compare_loops(loops, args)
        report(mode, times)
    check_mode = modes[-1]
    config = TrainConfig(task=args.task, precision=check_mode, batch_size=args.batch_size, device=args.device,
                         track_grad_norm=False, progress=False)  # fmt: skip
    run = build_run(config)
    with run.precision.scope():
        check_on, check_off, alone = compare_check(run, args)
    paired = statistics.median(a / b for a, b in zip(check_on, check_off))
    step = statistics.median(check_on)
    print(
        f"{check_mode}: nonfinite check on/off = {paired:.4f}x (median of {len(check_on)} paired steps; "
        "target <= 1.01x)"
    )
    print(
        f"{check_mode}: nonfinite check alone = {alone * 1e3:.3f} ms = {alone / step:.2%} of the api step (median)"
    )
    print(f"load average after {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
