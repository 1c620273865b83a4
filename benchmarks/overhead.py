"""ampkit's step time over a hand-written torch.amp loop's: same model, data and order.

Four loops train identical copies of ``tinygpt`` under bf16-mixed on the CPU:
  hand    — torch.autocast + torch.amp.GradScaler(enabled=False) + AdamW, written out by hand
  api     — ampkit's public API (Precision.autocast, PrecisionOptimizer.backward/step), defaults:
            the non-finite gradient check on (skip_nonfinite=True)
  nocheck — the same with skip_nonfinite=False: ``api/nocheck`` is what the check costs
  engine  — ampkit.engine.run_step (fp32 loss, sync context, records), grad-norm tracking off
They run interleaved in rounds, the order rotating each round (hand-api-nocheck-engine,
api-nocheck-engine-hand, ...), so drift of the machine and position in a round hit all alike;
each figure is the median over all timed steps, warm-up excluded.

    python benchmarks/overhead.py [--rounds 12] [--steps 8] [--batch-size 16] [--precision bf16-mixed]
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

from ampkit.engine import TrainConfig, build_run, run_step
from ampkit.hardware import device_capabilities
from ampkit.optim import PrecisionOptimizer
from ampkit.precision import Precision


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
    args = parser.parse_args()

    config = TrainConfig(task=args.task, precision=args.precision, batch_size=args.batch_size, device="cpu",
                         track_grad_norm=False, progress=False)  # fmt: skip
    run = build_run(config)
    precision: Precision = run.precision
    task = run.task

    hand_model = copy.deepcopy(run.model)
    hand_opt = torch.optim.AdamW(
        hand_model.parameters(), lr=task.default_lr, weight_decay=config.weight_decay
    )
    scaler = torch.amp.GradScaler("cpu", enabled=precision.spec.grad_scaler)
    dtype = precision.spec.autocast_dtype

    def api_loop(skip_nonfinite: bool) -> Callable[[int], None]:
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

        return step

    api_step, nocheck_step = api_loop(skip_nonfinite=True), api_loop(skip_nonfinite=False)
    counters = {"hand": 0, "api": 0, "nocheck": 0, "engine": 0}

    def hand_step() -> None:
        inputs, targets = task.train_batch(counters["hand"])
        with torch.autocast("cpu", dtype=dtype or torch.bfloat16, enabled=dtype is not None):
            logits = hand_model(inputs)
        loss = F.cross_entropy(logits.float().flatten(0, 1), targets.flatten())
        scaler.scale(loss).backward()
        scaler.step(hand_opt)
        scaler.update()
        hand_opt.zero_grad(set_to_none=True)
        loss.item()

    def engine_step() -> None:
        loss, _ = run_step(run, counters["engine"])
        loss.item()

    loops = {
        "hand": hand_step,
        "api": lambda: api_step(counters["api"]),
        "nocheck": lambda: nocheck_step(counters["nocheck"]),
        "engine": engine_step,
    }
    times: dict[str, list[float]] = {name: [] for name in loops}
    with precision.scope():
        for name, step in loops.items():
            for _ in range(args.warmup):
                step()
                counters[name] += 1
        names = list(loops)
        for r in range(args.rounds):
            # Rotate who goes first each round, so position in the round biases no loop.
            for name in names[r % len(names) :] + names[: r % len(names)]:
                step = loops[name]
                for _ in range(args.steps):
                    began = time.perf_counter()
                    step()
                    times[name].append(time.perf_counter() - began)
                    counters[name] += 1

    caps = device_capabilities("cpu")
    print(f"machine: {caps.name}, {torch.get_num_threads()} threads, torch {torch.__version__}, "
          f"python {platform.python_version()}")  # fmt: skip
    print(f"task {args.task}, {precision.name}, batch {args.batch_size}, "
          f"{args.rounds} rounds x {args.steps} steps per loop, interleaved, warm-up {args.warmup} excluded")  # fmt: skip
    hand = statistics.median(times["hand"])
    for name, values in times.items():
        med = statistics.median(values)
        p90 = statistics.quantiles(values, n=10)[-1]
        print(
            f"{name:7s} median {med * 1e3:8.2f} ms  p90 {p90 * 1e3:8.2f} ms  ratio vs hand {med / hand:.4f}"
        )
    print(f"overhead api/hand = {statistics.median(times['api']) / hand:.4f} (target <= 1.01)")
    print(f"overhead engine/hand = {statistics.median(times['engine']) / hand:.4f}")
    check = statistics.median(times["api"]) / statistics.median(times["nocheck"])
    print(f"nonfinite check on/off = {check:.4f}x (target <= 1.01x)")


if __name__ == "__main__":
    main()
