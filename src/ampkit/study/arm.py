"""One study arm in its own process: ``python -m ampkit.study.arm SPEC.json`` (the parent starts it
through :data:`ampkit.study.children.BOOT`, which first ties the arm's life to the parent's).

The spec names the TrainConfig, the warm-up and the result path. The arm trains with
:func:`ampkit.engine.train` and the :class:`~ampkit.study.meters.ArmMeters` hook, streams
``{"step", "total", "loss"}`` lines on stdout, and writes its result JSON. Any exception
becomes ``{"status": "failed", "reason": <one line>}`` so the parent reports it in the table.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
import warnings
from pathlib import Path
from typing import Any

import torch

from ..engine import EvalRecord, RunResult, TrainConfig, train
from ..hardware.capabilities import device_capabilities
from .energy import open_counter
from .flops import peak_tflops, step_flops
from .meters import ArmMeters, Figure, figure, step_time_figures, unavailable


def _first_reaching(result: RunResult, target: float) -> EvalRecord | None:
    for ev in result.evals:
        value = ev.metrics.get(result.metric_name)
        if value is not None and (value >= target if result.higher_is_better else value <= target):
            return ev
    return None


def target_figures(result: RunResult, target: float, meters: ArmMeters) -> dict[str, Any]:
    """Steps, training time and energy to the first evaluation that reaches ``target``."""
    hit = _first_reaching(result, target)
    every = result.config.get("eval_every", 0)
    base = {"target": target, "metric": result.metric_name, "eval_every": every, "reached": hit is not None}
    if hit is None:
        return base
    energy = meters.energy_at_step.get(hit.step)
    return {
        **base,
        "steps": figure(hit.step, "steps", f"first of the evaluations every {every} steps to reach it"),
        "time_s": figure(
            hit.elapsed_s, "s", "sum of step times up to that step (warm-up included, evals not)"
        ),
        "energy_j": figure(
            energy, "J", f"{meters.counter.method} from training start (includes earlier evaluations)"
        )
        if energy is not None
        else unavailable("J", getattr(meters.counter, "reason", "no reading at that step")),
    }


def flop_figures(config: TrainConfig, median_s: float | None, numerics: dict[str, Any]) -> dict[str, Figure]:
    """FLOPs per step, achieved TFLOP/s and MFU against the named peak (or unavailable)."""
    flops, how = step_flops(config, numerics)
    out = {"flops_per_step": figure(flops, "FLOP", how)}
    if not median_s:
        return out
    achieved = flops / median_s / 1e12
    out["achieved_tflops"] = figure(achieved, "TFLOP/s", "FLOPs per step ÷ median step time")
    peak, name = peak_tflops(config.precision, device_capabilities(config.device))
    if peak and config.nproc > 1:  # the global batch runs on nproc devices
        peak, name = peak * config.nproc, f"{config.nproc} × {name}"
    out["mfu"] = (
        figure(achieved / peak, "fraction", f"achieved TFLOP/s ÷ {name}")
        if peak
        else unavailable("fraction", name)
    )
    return out


def compile_figures(info: dict[str, Any], warmup: int) -> dict[str, Figure]:
    """torch.compile's compile time, apart from the step times (warm-up excludes the steps that
    compiled, unless one recompiled later: the method then says so)."""
    steps = info.get("compile_steps") or []
    late = [s for s in steps if s > warmup]
    how = f"{info['method']}; steps that compiled: {', '.join(map(str, steps)) or 'none'}"
    if late:
        how += f" (steps {late} compiled after warm-up: their time is inside the step-time figures)"
    if info.get("status") == "eager":
        how += f"; ran eager: {info.get('reason')}"
    seconds = info.get("compile_s")
    return {
        "compile_time_s": figure(seconds, "s", how) if seconds is not None else unavailable("s", how),
        "first_step_s": figure(
            info.get("first_step_s"),
            "s",
            "wall time of the first step (compile included), device-synchronised",
        ),
    }


def rank() -> tuple[int, int]:
    """``(RANK, LOCAL_RANK)`` from a launcher's environment; ``(0, 0)`` for a single-process arm."""
    from ..engine.distributed import world_from_env

    global_rank, _, local_rank = world_from_env()  # garbage is one line naming the variable
    return global_rank, local_rank


def run_arm(spec: dict[str, Any]) -> dict[str, Any]:
    """Train one arm (or one rank of a multi-process arm) and return its measurements (JSON-ready)."""
    config = TrainConfig.from_dict(spec["config"])
    warmup = int(spec["warmup"])
    global_rank, local_rank = rank()
    device = torch.device(config.device)
    if device.type != "cpu" and device.index is None and config.nproc > 1:
        device = torch.device(device.type, local_rank)  # the GPU this rank trains on
    counter = open_counter(device)
    stream = sys.stdout if global_rank == 0 else None  # one progress stream per arm
    meters = ArmMeters(warmup, int(config.steps or 0), counter, stream=stream, eval_every=config.eval_every)
    began = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = train(config, hooks=[meters])
    items = sum(r.items for r in result.history[warmup:])
    figures: dict[str, Figure] = {
        **step_time_figures(result.history, warmup),
        **meters.memory_figures(),
        **meters.energy_figures(items),
        "skipped_steps": figure(result.skipped_steps, "steps", "optimizer steps the GradScaler skipped"),
    }
    if result.compile:  # --compile: compile time apart from step time
        figures.update(compile_figures(result.compile, warmup))
    if result.final_loss_scale is not None:  # no scaler: the figure does not apply (shown as "-")
        figures["final_loss_scale"] = figure(
            result.final_loss_scale, "", "GradScaler scale after the last step"
        )
    median = figures.get("step_time_median_s", {}).get("value")
    if global_rank == 0:  # FLOPs of the global batch, counted once
        figures.update(flop_figures(config, median, result.numerics))
    target = spec.get("target_metric")
    return {
        "status": "measured",
        "mode": result.precision,
        "seed": config.seed,
        "pid": os.getpid(),
        "rank": global_rank,
        "nproc": config.nproc,
        "parent_pid": os.getppid(),
        "describe": result.describe,
        "compile": result.compile,
        "flags": meters.flags,
        "threads": torch.get_num_threads(),
        "device": str(device),
        "item_unit": result.item_unit,
        "metric_name": result.metric_name,
        "higher_is_better": result.higher_is_better,
        "final": result.final,
        "loss_curve": [r.loss for r in result.history],
        "step_times_s": [r.time_s for r in result.history],
        "step_stats": {  # per step, for compare --log's trackers (docs/trackers.md)
            "loss_scale": [r.loss_scale for r in result.history],
            "grad_norm": [r.grad_norm for r in result.history],
            "applied": [r.applied for r in result.history],
            "items_per_step": result.history[0].items if result.history else None,
            "lr": meters.lr,
        },
        "evals": [{"step": e.step, "elapsed_s": e.elapsed_s, **e.metrics} for e in result.evals],
        "figures": figures,
        "target": target_figures(result, float(target), meters) if target is not None else None,
        "warnings": sorted({str(w.message) for w in caught}),
        "wall_s": time.perf_counter() - began,
    }


def main(argv: list[str] | None = None) -> int:
    """Entry point: read the spec, run, write the result (or the failure) to ``spec["result_path"]``.

    A failure also prints its traceback on stderr, whose last lines the parent shows with the arm.
    """
    from ..errors import out_of_memory
    from ..fsutil import write_atomic

    args = sys.argv[1:] if argv is None else argv
    spec = json.loads(Path(args[0]).read_text())
    path = Path(spec["result_path"].replace("{rank}", str(rank()[0])))  # one result file per rank
    try:
        out = run_arm(spec)
        code = 0
    except Exception as err:  # the parent shows this line in the table instead of crashing the study
        memory = out_of_memory(err)
        if memory is None:
            traceback.print_exc()
            first = str(err).strip().splitlines()[0] if str(err).strip() else ""
            reason = f"{type(err).__name__}: {first}"
        else:  # one line says it all: no traceback
            reason = f"{memory} at --batch-size {spec.get('config', {}).get('batch_size', '?')}"
            print(f"ampkit arm: {reason}", file=sys.stderr)
        out = {"status": "failed", "reason": reason, "pid": os.getpid()}
        code = 1
    write_atomic(path, json.dumps(out, indent=1))
    return code


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    # The result is written: skip interpreter teardown, where gloo's threads of a multi-process
    # arm can abort the process after it measured correctly (as ampkit.engine.launch does).
    os._exit(code)
