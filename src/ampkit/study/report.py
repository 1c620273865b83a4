"""Study outputs: the terminal table (rich), ``results.json``, ``results.csv`` and ``report.md``.

All four read the same summarised study dict; a figure without a measurement prints as
``unavailable`` everywhere (the reason is in the JSON and the report's method list). A failed
arm shows its reason and the last lines of its stderr. Files are written atomically.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from ..fsutil import write_atomic
from ..termtext import cells, markup, visible

UNAVAILABLE = "unavailable"
Arm = dict[str, Any]


def _val(arm: Arm, key: str) -> dict[str, Any] | None:
    return arm.get("summary", {}).get(key)


def fmt(fig: dict[str, Any] | None, scale: float = 1.0, digits: int = 2, unit: str = "") -> str:
    """``1.23 ± 0.04 unit``; ``unavailable`` for unmeasurable figures; ``-`` for figures that do not apply."""
    if fig is None:
        return "-"
    if fig.get("value") is None:
        return UNAVAILABLE
    text = f"{fig['value'] * scale:,.{digits}f}"
    if fig.get("std") is not None:
        text += f" ± {fig['std'] * scale:,.{digits}f}"
    return f"{text} {unit}".strip() + (" (!)" if fig.get("flags") else "")


def _memory(arm: Arm) -> str:
    alloc, rss = _val(arm, "peak_mem_allocated_bytes"), _val(arm, "peak_rss_bytes")
    gpu = _val(arm, "peak_gpu_mem_bytes")  # a command arm on a GPU machine: NVML, beside the tree's RSS
    if gpu is not None:
        return f"{fmt(gpu, 2**-20, 0, 'MiB GPU')}, {fmt(rss, 2**-20, 0, 'MiB RSS')}{_ratio(arm)}"
    if alloc is not None:
        reserved = _val(arm, "peak_mem_reserved_bytes")
        return f"{fmt(alloc, 2**-20, 0)} / {fmt(reserved, 2**-20, 0)} MiB{_ratio(arm)}"
    added = _val(arm, "peak_rss_added_bytes")
    if added is not None and added.get("value") is not None and rss is not None:
        return f"{fmt(rss, 2**-20, 0, 'MiB RSS')} (+{added['value'] / 2**20:,.0f} run){_ratio(arm)}"
    return fmt(rss, 2**-20, 0, "MiB RSS") + _ratio(arm)


def _ratio(arm: Arm) -> str:
    """`` 0.53x fp32`` for a non-fp32 arm whose memory ratio was measured."""
    fig = _val(arm, "memory_vs_fp32")
    if arm.get("mode") == "fp32" or not fig or fig.get("value") is None:
        return ""
    return f" {fig['value']:.2f}x fp32"


def _delta(arm: Arm, key: str) -> str:
    fig = _val(arm, key)
    return "-" if fig is None else (UNAVAILABLE if fig.get("value") is None else f"{fig['value']:+.4f}")


def _target(arm: Arm) -> str:
    t = _val(arm, "target")
    if not t:
        return "-"
    if "steps" not in t:
        return f"not reached ({t['reached']})"
    energy = fmt(t["energy_j"], digits=1, unit="J")
    return f"{fmt(t['steps'], digits=0)} steps, {fmt(t['time_s'], digits=1)} s, energy {energy}"


def _item(arm: Arm) -> str:
    return str(arm.get("summary", {}).get("item_unit", "items")).rstrip("s") or "item"


def _with_delta(arm: Arm, key: str, delta: str) -> str:
    return f"{fmt(_val(arm, key), digits=4)} ({_delta(arm, delta)})"


def _pair(arm: Arm, a: str, b: str, scale: float = 1.0, digits: int = 1) -> str:
    return f"{fmt(_val(arm, a), scale, digits)} / {fmt(_val(arm, b), scale, digits)}"


#: (header, cell) for the table and report.md; ``{metric}``/``{item}`` are filled from the task.
#: Skipped and failed arms show their reason instead.
COLUMNS: list[tuple[str, Callable[[Arm], str]]] = [
    ("{metric} (Δ vs fp32)", lambda a: _with_delta(a, "metric", "metric_delta")),
    ("{loss} (Δ vs fp32)", lambda a: _with_delta(a, "eval_loss", "loss_delta")),
    ("step ms median / p90", lambda a: _pair(a, "step_time_median_s", "step_time_p90_s", 1e3)),
    ("speedup vs fp32", lambda a: fmt(_val(a, "speedup"), digits=2, unit="x")),
    ("{item}s/s", lambda a: fmt(_val(a, "throughput"), digits=0)),
    ("peak memory", _memory),
    ("energy J", lambda a: fmt(_val(a, "energy_j"), digits=1)),
    ("energy mJ/{item}", lambda a: fmt(_val(a, "energy_per_item_j"), 1e3, 3)),
    ("skipped steps / loss scale", lambda a: _pair(a, "skipped_steps", "final_loss_scale", digits=0)),
    ("MFU", lambda a: fmt(_val(a, "mfu"), 100, 1, "%")),
    ("compile s (speedup vs eager)", lambda a: _compile(a)),
    ("to target", _target),
]


def _compile(arm: Arm) -> str:
    """--compile: compile seconds, and the speedup over the same mode eager where both ran."""
    seconds = _val(arm, "compile_time_s")
    if seconds is None:
        return "-"
    speedup = _val(arm, "compile_speedup")
    return fmt(seconds, digits=1) + (f" ({fmt(speedup, digits=2, unit='x')})" if speedup else "")


def rows(study: dict[str, Any]) -> list[list[str]]:
    """One row per arm: precision, status, then :data:`COLUMNS` (or the reason of a skipped/failed arm)."""
    out = []
    for arm in study["arms"]:
        if not arm.get("summary"):
            out.append([arm["mode"], f"{arm['status']}: {arm.get('reason') or ''}"] + [""] * len(COLUMNS))
            continue
        out.append([arm["mode"], arm["status"]] + [cell(arm) for _, cell in COLUMNS])
    return out


def headers(study: dict[str, Any]) -> list[str]:
    """Column titles (the metric column named after the task's metric)."""
    first: Arm = next((a for a in study["arms"] if a.get("summary")), {})
    metric = first.get("summary", {}).get("metric_name", "metric")
    loss = first.get("summary", {}).get("loss_title", "eval loss")
    titles = [h.format(metric=metric, loss=loss, item=_item(first) if first else "item") for h, _ in COLUMNS]
    return ["precision", "status", *titles]


def print_table(study: dict[str, Any], console: Console) -> None:
    """The rich table in the terminal; reasons of skipped arms follow it."""
    task = study["task"] if len(study["task"]) <= 70 else study["task"][:67] + "..."  # a long command
    # names, reasons and a command's output are the user's text: shown literally (no markup, no escapes)
    table = Table(title=f"ampkit compare: {markup(task)} ({markup(study['experiment'])})", show_lines=False)
    hide = {"to target"} if study["settings"].get("target_metric") is None else set()
    if study["settings"].get("compile", "off") == "off":
        hide.add("compile s (speedup vs eager)")
    if study.get("kind") == "command":  # figures a command arm cannot have: no scaler or FLOPs seen
        hide |= {"skipped steps / loss scale", "MFU"}
    keep = [i for i, h in enumerate(headers(study)) if h not in hide]
    for i in keep:
        table.add_column(markup(headers(study)[i]), overflow="fold", no_wrap=i == 0)
    for arm, row in zip(study["arms"], rows(study)):
        if not arm.get("summary"):
            table.add_row(*cells(row[0], arm["status"]), *[""] * (len(keep) - 2))
        else:
            table.add_row(*cells(*[row[i] for i in keep]))
    console.print(table)
    for arm in study["arms"]:
        if arm["status"] != "measured":
            console.print(
                visible(f"  {arm['mode']}: {arm['status']}: {arm.get('reason')}"),
                markup=False,
                highlight=False,
            )
        for line in arm.get("stderr_tail", []):
            console.print(f"    | {visible(line)}", markup=False, highlight=False)


def _raw(fig: dict[str, Any] | None) -> Any:
    if fig is None:
        return ""
    return UNAVAILABLE if fig.get("value") is None else fig["value"]


CSV_FIGURES = (
    "metric", "metric_delta", "eval_loss", "loss_delta", "step_time_median_s", "step_time_p90_s", "speedup",
    "throughput", "peak_mem_allocated_bytes", "peak_mem_reserved_bytes", "peak_rss_bytes", "peak_rss_added_bytes", "peak_gpu_mem_bytes", "energy_j",
    "energy_per_item_j", "skipped_steps", "final_loss_scale", "flops_per_step", "achieved_tflops", "mfu",
    "compile_time_s", "compile_speedup", "first_step_s", "memory_vs_fp32",
)  # fmt: skip


def write_csv(study: dict[str, Any], path: Path) -> None:
    """One row per arm: raw numbers in SI units (``unavailable`` where unmeasurable), stds beside means."""
    text = io.StringIO(newline="")
    w = csv.writer(text)
    w.writerow(["precision", "status", "reason", "ran_precision", "metric_name", "item_unit", "seeds", "pids"]
               + [c for k in CSV_FIGURES for c in (k, f"{k}_std")] + ["stderr_tail"])  # fmt: skip
    for arm in study["arms"]:
        s = arm.get("summary") or {}
        runs = arm.get("runs", [])
        row = [arm["mode"], arm["status"], arm.get("reason") or "", arm.get("ran_precision", ""),
               s.get("metric_name", ""), s.get("item_unit", ""),
               " ".join(str(r.get("seed")) for r in runs), " ".join(str(r.get("pid")) for r in runs)]  # fmt: skip
        for key in CSV_FIGURES:
            fig = s.get(key)
            row += [_raw(fig), "" if not fig or fig.get("std") is None else fig["std"]]
        w.writerow([*row, "\n".join(arm.get("stderr_tail", []))])
    write_atomic(path, text.getvalue())


def write_json(study: dict[str, Any], path: Path) -> None:
    """Everything: settings, machine, arm order with pids, per-seed runs with curves, summaries, methods."""
    write_atomic(path, json.dumps(study, indent=1, default=str))
