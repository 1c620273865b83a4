"""Run an :class:`Experiment`: one fresh process per (precision, seed), collected into one study dict.

Each arm is ``python -m ampkit.study.arm SPEC.json``: a fresh interpreter, so the CPU peak
RSS, the CUDA caching allocator, cuDNN's autotuner and compile caches start empty in every
arm. Arms run one after another (never concurrently: they would compete for the device),
seed by seed, each seed running every precision; the order is recorded. A failing arm
becomes a ``failed`` row with its one-line reason.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ..errors import UsageError
from ..hardware.capabilities import device_capabilities
from .arms import ArmPlan, plan_arms
from .config import Experiment
from .metadata import machine_metadata
from .processes import run_arm_process

SCHEMA = "ampkit-study/1"


def _progress(console: Console) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[loss]}"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )


def require_runnable(exp: Experiment) -> None:
    """Raise :class:`UsageError` for studies that cannot run here (checked before any arm starts)."""
    if exp.gpus > 1:
        from ..engine.distributed import check_devices, check_split

        config = exp.train_config("fp32", exp.seeds[0])
        try:
            check_split(exp.gpus, config.strategy, config.batch_size)
            check_devices(exp.gpus, config.device)
        except UsageError as err:
            raise UsageError(f"--gpus {exp.gpus}: {err}") from None


def run_experiment(exp: Experiment, out: Path, *, console: Console | None = None) -> dict[str, Any]:
    """Run every arm of ``exp`` (writing per-arm files under ``out/arms``) and return the study dict."""
    require_runnable(exp)
    console = console or Console(stderr=True)
    device = exp.overrides.get("device") or exp.train_config("fp32", exp.seeds[0]).device
    caps = device_capabilities(device)
    plans = plan_arms(exp.precisions, caps)
    running = [p for p in plans if p.run]
    folder = out / "arms"
    folder.mkdir(parents=True, exist_ok=True)
    jobs = [(seed, plan) for seed in exp.seeds for plan in running]
    records: dict[str, list[dict[str, Any]]] = {p.mode: [] for p in running}
    order: list[dict[str, Any]] = []
    started = time.time()
    load_before = os.getloadavg() if hasattr(os, "getloadavg") else None
    with _progress(console) as progress:
        overall = progress.add_task(f"{exp.name}: arms", total=len(jobs), loss="")
        for index, (seed, plan) in enumerate(jobs):
            label = f"{plan.mode}-seed{seed}"
            current = progress.add_task(f"  {label}", total=exp.steps, loss="")
            spec = {
                "config": exp.train_config(plan.mode, seed).to_dict(),
                "warmup": exp.warmup_steps,
                "target_metric": exp.target_metric,
                "label": label,
            }
            t0 = time.perf_counter()

            def on_step(step: dict[str, Any], task_id: Any = current) -> None:
                progress.update(
                    task_id, completed=step["step"], total=step["total"], loss=f"{step['loss']:.4f}"
                )

            record = run_arm_process(spec, folder, label, on_step, nproc=exp.gpus)
            record["seed"], record["mode"], record["order"] = seed, plan.mode, index
            record["arm_wall_s"] = time.perf_counter() - t0
            records[plan.mode].append(record)
            order.append({"index": index, "mode": plan.mode, "seed": seed, "pid": record.get("pid"),
                          "rank_pids": record.get("rank_pids")})  # fmt: skip
            status = record.get("status")
            progress.update(current, loss=status if status != "measured" else f"{record['arm_wall_s']:.1f} s")
            progress.advance(overall)
    return {
        "schema": SCHEMA,
        "experiment": exp.name,
        "task": exp.task,
        "settings": {
            "precisions": "auto" if exp.precisions is None else list(exp.precisions),
            "seeds": list(exp.seeds),
            "steps": exp.steps,
            "warmup_steps": exp.warmup_steps,
            "eval_every": exp.eval_every,
            "target_metric": exp.target_metric,
            "overrides": exp.overrides,
            "gpus": exp.gpus,
        },
        "parent_pid": os.getpid(),
        "started_unix": started,
        "wall_s": time.time() - started,
        "loadavg_before": load_before,
        "loadavg_after": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "machine": machine_metadata(caps),
        "arm_order": order,
        "arms": [_arm_entry(plan, records.get(plan.mode, [])) for plan in plans],
    }


def _arm_entry(plan: ArmPlan, runs: list[dict[str, Any]]) -> dict[str, Any]:
    entry: dict[str, Any] = asdict(plan)
    entry["warnings"] = list(plan.warnings)
    if not plan.run:
        entry["status"], entry["runs"] = "skipped", []
        return entry
    failed = [r for r in runs if r.get("status") != "measured"]
    entry["status"] = "failed" if failed else "measured"
    if failed:
        entry["reason"] = failed[0].get("reason", "failed")
    entry["runs"] = runs
    return entry
