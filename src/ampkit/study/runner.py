"""Run an :class:`Experiment`: one fresh process per (precision, seed), collected into one study dict.

Each arm is ``python -m ampkit.study.arm SPEC.json``: a fresh interpreter, so the CPU peak
RSS, the CUDA caching allocator, cuDNN's autotuner and compile caches start empty in every
arm. Arms run one after another (never concurrently: they would compete for the device),
seed by seed, each seed running every precision; the order is recorded. A failing arm
becomes a ``failed`` row with its one-line reason.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
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

SCHEMA = "ampkit-study/1"


def _reason(result_path: Path, log_path: Path, code: int) -> dict[str, Any]:
    """The arm's own failure record, or the last line of its stderr when it died before writing one."""
    if result_path.exists():
        data: dict[str, Any] = json.loads(result_path.read_text())
        return data
    lines = (
        [ln for ln in log_path.read_text(errors="replace").splitlines() if ln.strip()]
        if log_path.exists()
        else []
    )
    last = lines[-1].strip() if lines else "no output"
    return {"status": "failed", "reason": f"arm process exited with code {code}: {last}"}


def run_arm_process(
    spec: dict[str, Any], folder: Path, label: str, progress: Progress | None = None, task_id: Any = None
) -> dict[str, Any]:
    """Launch one arm process, stream its step lines into ``progress``, return its result record."""
    spec_path, result_path, log_path = (folder / f"{label}{ext}" for ext in (".spec.json", ".json", ".log"))
    result_path.unlink(missing_ok=True)
    spec = {**spec, "result_path": str(result_path)}
    spec_path.write_text(json.dumps(spec, indent=1))
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "ampkit.study.arm", str(spec_path)],
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            env=env,
        )
        assert proc.stdout is not None
        for line in proc.stdout:  # the arm's step lines: {"step", "total", "loss"}
            try:
                step = json.loads(line)
            except ValueError:
                log.write(line)  # stray prints from a user's task go to the log, not the terminal
                continue
            if progress is not None and isinstance(step, dict) and "step" in step:
                progress.update(
                    task_id, completed=step["step"], total=step["total"], loss=f"{step['loss']:.4f}"
                )
        code = proc.wait()
    return _reason(result_path, log_path, code) if code else json.loads(result_path.read_text())


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
    """Raise :class:`UsageError` for studies this ampkit cannot run (before any arm starts)."""
    if exp.gpus > 1:
        # TODO(distributed): launch each arm under torchrun once `ampkit train --nproc` exists.
        raise UsageError(
            f"--gpus {exp.gpus}: distributed arms need the distributed engine (ampkit train --nproc), "
            "which this ampkit does not have yet; use --gpus 1"
        )


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
            record = run_arm_process(spec, folder, label, progress, current)
            record["seed"], record["mode"], record["order"] = seed, plan.mode, index
            record["arm_wall_s"] = time.perf_counter() - t0
            records[plan.mode].append(record)
            order.append({"index": index, "mode": plan.mode, "seed": seed, "pid": record.get("pid")})
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
