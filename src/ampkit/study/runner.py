"""Run an :class:`Experiment`: one fresh process per (precision, seed), collected into one study dict.

Each arm is ``python -m ampkit.study.arm SPEC.json``: a fresh interpreter, so the CPU peak
RSS, the CUDA caching allocator, cuDNN's autotuner and compile caches start empty in every
arm. Arms run one after another (never concurrently: they would compete for the device),
seed by seed, each seed running every precision; the order is recorded. Everything a user
could get wrong is checked before the first arm starts (:func:`require_runnable`, from
:mod:`.preflight`, re-exported here with :func:`plan_study` and :func:`probe_task`). A failing
arm becomes a ``failed`` row with its one-line reason and the tail of its stderr; the console
names each arm's processes and prints its fit warnings. Ctrl-C stops the running arm (its
whole process group) and the study keeps what was measured.
"""

from __future__ import annotations

import os
import shlex
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

from ..termtext import plain_column, visible
from .arms import ArmPlan, arm_entry, new_warnings
from .config import Experiment
from .metadata import machine_metadata
from .preflight import plan_study as plan_study
from .preflight import probe_task as probe_task
from .preflight import require_runnable as require_runnable
from .processes import run_arm_process

SCHEMA = "ampkit-study/1"


def _progress(console: Console) -> Progress:
    return Progress(
        plain_column("{task.description}", style="bold"),  # names and statuses: literal text
        BarColumn(),
        MofNCompleteColumn(),
        plain_column("{task.fields[loss]}"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )


def _say(console: Console, text: str) -> None:
    console.print(visible(text), markup=False, highlight=False, soft_wrap=True)


def _processes_line(exp: Experiment, label: str, pids: list[int]) -> str:
    if len(pids) == 1:
        return f"{label}: 1 process, pid {pids[0]}"
    config = exp.train_config("fp32", exp.seeds[0])
    backend = "nccl" if config.device.startswith("cuda") else "gloo"
    return (
        f"{label}: {len(pids)} processes ({config.strategy} ranks over {backend} on {config.device}, "
        f"batch {config.batch_size} split {config.batch_size // len(pids)} per rank), "
        f"pids {', '.join(map(str, pids))}"
    )


def run_experiment(
    exp: Experiment,
    out: Path,
    *,
    console: Console | None = None,
    checked: bool = False,
    on_arm: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Run every arm of ``exp`` (writing per-arm files under ``out/arms``) and return the study dict.

    ``checked``: :func:`require_runnable` already ran. Ctrl-C (or SIGTERM turned into
    KeyboardInterrupt) stops the running arm and returns what was measured, with
    ``study["interrupted"]`` set. ``on_arm(record)`` is called as each arm run ends (the
    trackers of ``compare --log``).
    """
    if not checked:
        require_runnable(exp)
    console = console or Console(stderr=True)
    caps, plans = plan_study(exp)
    running = [p for p in plans if p.run]
    folder = out / "arms"
    folder.mkdir(parents=True, exist_ok=True)
    jobs = [(seed, plan) for seed in exp.seeds for plan in running]
    records: dict[str, list[dict[str, Any]]] = {p.mode: [] for p in running}
    order: list[dict[str, Any]] = []
    started = time.time()
    load_before = os.getloadavg() if hasattr(os, "getloadavg") else None
    interrupted = False
    with _progress(console) as progress:
        overall = progress.add_task(f"{exp.name}: arms", total=len(jobs), loss="")
        for index, (seed, plan) in enumerate(jobs):
            label = f"{plan.mode}-seed{seed}"
            pids: list[int] = []
            try:
                if exp.command is not None:
                    from .command import run_command_arm

                    record = run_command_arm(exp, plan, seed, label, folder, progress, pids)
                else:
                    record = _run_one(exp, plan, seed, label, folder, progress, pids)
            except KeyboardInterrupt:
                interrupted = True
                record = {"status": "interrupted", "pid": pids[0] if pids else None,
                          "reason": "interrupted while running; its processes were stopped"}  # fmt: skip
            record["seed"], record["mode"], record["order"] = seed, plan.mode, index
            records[plan.mode].append(record)
            if on_arm is not None:
                try:
                    on_arm(record)
                except KeyboardInterrupt:  # while the trackers wrote: the study keeps what it measured
                    interrupted = True
            order.append({"index": index, "mode": plan.mode, "seed": seed, "pid": record.get("pid"),
                          "rank_pids": record.get("rank_pids")})  # fmt: skip
            if interrupted:
                break
            progress.advance(overall)
    return {
        "schema": SCHEMA,
        "experiment": exp.name,
        "task": exp.task
        if exp.command is None
        else shlex.join([Path(exp.command[0]).name, *exp.command[1:]]),
        "kind": "task" if exp.command is None else "command",
        "settings": {
            "precisions": "auto" if exp.precisions is None else list(exp.precisions),
            "seeds": list(exp.seeds),
            "steps": exp.steps,
            "warmup_steps": exp.warmup_steps,
            "eval_every": exp.eval_every,
            "target_metric": exp.target_metric,
            "overrides": exp.overrides,
            "gpus": exp.gpus,
            "compile": exp.compile,
            **_command_settings(exp),
        },
        "parent_pid": os.getpid(),
        "started_unix": started,
        "wall_s": time.time() - started,
        "loadavg_before": load_before,
        "loadavg_after": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "machine": machine_metadata(caps),
        "interrupted": interrupted,
        "arm_order": order,
        "arms": [arm_entry(plan, records.get(plan.mode, []), len(exp.seeds)) for plan in plans],
    }


def _command_settings(exp: Experiment) -> dict[str, Any]:
    """A command study's own settings (its steps are the script's: ``steps`` is None)."""
    if exp.command is None:
        return {}
    return {"steps": None, "command": list(exp.command), "env": exp.env, "parse": list(exp.parse),
            "metric": exp.metric, "amp_flags": exp.amp_flags}  # fmt: skip


def _run_one(
    exp: Experiment, plan: ArmPlan, seed: int, label: str, folder: Path, progress: Progress, pids: list[int]
) -> dict[str, Any]:
    """One arm: say what starts (processes, fit warnings), run it, say how it ended."""
    say = progress.console
    current = progress.add_task(f"  {label}", total=exp.steps, loss="")
    for warning in plan.warnings:
        _say(say, f"{label}: warning: {warning}")
    spec = {
        "config": exp.train_config(plan.mode, seed).to_dict(),
        "warmup": exp.warmup_steps,
        "target_metric": exp.target_metric,
        "label": label,
    }

    def on_step(step: dict[str, Any]) -> None:
        progress.update(current, completed=step["step"], total=step["total"], loss=f"{step['loss']:.4f}")

    def on_start(started: list[int]) -> None:
        pids.extend(started)
        _say(say, _processes_line(exp, label, started))

    t0 = time.perf_counter()
    record = run_arm_process(spec, folder, label, on_step, nproc=exp.gpus, on_start=on_start)
    record["arm_wall_s"] = time.perf_counter() - t0
    for warning in new_warnings(plan, record):
        _say(say, f"{label}: warning: {warning}")
    status = record.get("status")
    if status != "measured":
        _say(say, f"{label}: {status}: {record.get('reason')}")
        for line in record.get("stderr_tail", []):
            _say(say, f"{label}:   | {line}")
    progress.update(current, loss=status if status != "measured" else f"{record['arm_wall_s']:.1f} s")
    return record
