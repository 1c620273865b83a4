"""``report.md``: the table, the plots, the machine, and the method of every figure."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..fsutil import write_atomic
from .report import headers, rows
from .report_cmd import command_lines

#: Figure keys shown in the method list, with a title.
METHOD_TITLES = {
    "metric": "eval metric",
    "eval_loss": "eval loss",
    "metric_delta": "Δ metric",
    "loss_delta": "Δ loss",
    "step_time_median_s": "median step time",
    "step_time_p90_s": "p90 step time",
    "speedup": "speedup vs fp32",
    "memory_vs_fp32": "peak memory vs fp32",
    "throughput": "throughput",
    "peak_mem_allocated_bytes": "peak memory (allocated)",
    "peak_mem_reserved_bytes": "peak memory (reserved)",
    "peak_rss_bytes": "peak memory (RSS)",
    "peak_rss_added_bytes": "peak memory the run added (RSS)",
    "energy_j": "energy",
    "energy_per_item_j": "energy per item",
    "skipped_steps": "skipped steps",
    "final_loss_scale": "final loss scale",
    "flops_per_step": "FLOPs per step",
    "achieved_tflops": "achieved TFLOP/s",
    "mfu": "MFU",
    "compile_time_s": "compile time",
    "compile_speedup": "compiled vs eager",
    "first_step_s": "first step",
}


def _md_table(head: list[str], body: list[list[str]]) -> list[str]:
    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.replace("|", "/") for c in cells) + " |"

    return [line(head), line(["---"] * len(head)), *(line(r) for r in body)]


def _methods(study: dict[str, Any]) -> list[str]:
    out = []
    arm = next((a for a in study["arms"] if a.get("summary")), None)
    if arm is None:
        return ["No arm was measured."]
    for key, title in METHOD_TITLES.items():
        if key == "eval_loss":  # a command arm's loss is the script's last training loss
            title = arm["summary"].get("loss_title", title)
        fig = arm["summary"].get(key)
        if not fig:
            continue
        how = fig["method"] if fig.get("value") is not None else f"unavailable: {fig.get('unavailable')}"
        out.append(f"- **{title}** ({fig.get('unit') or 'unitless'}): {how}")
    return out


def write_markdown(study: dict[str, Any], path: Path, plots: list[Path]) -> None:
    """Write ``report.md`` next to the plots it embeds."""
    s, m = study["settings"], study["machine"]
    hw, sw = m["hardware"], m["software"]
    cc = (
        f", compute capability {'.'.join(map(str, hw['compute_capability']))}"
        if hw.get("compute_capability")
        else ""
    )
    flags = (
        f"; precision flags: {', '.join(hw.get('precision_cpu_flags', [])) or 'none'}"
        if "precision_cpu_flags" in hw
        else ""
    )
    lines = [
        f"# ampkit compare: {study['task']} ({study['experiment']})",
        "",
        f"- machine: {hw['device_type']} — {hw['name']}{cc}{flags}; {hw['cpu_count']} logical CPUs",
        f"- software: torch {sw['torch']}, Python {sw['python']}, ampkit {sw['ampkit']}, {sw['platform']}",
        f"- precisions: {s['precisions']}; seeds {s['seeds']}; {s['steps']} steps per arm, the first "
        f"{s['warmup_steps']} excluded from time, memory and energy; overrides {s['overrides'] or 'none'}"
        if s.get("command") is None
        else f"- precisions: {s['precisions']}; seeds {s['seeds']}; the script's own steps, the first "
        f"{s['warmup_steps']} logged steps excluded from step time and energy; processes per arm {s['gpus']}",
        f"- load average before / after: {study.get('loadavg_before')} / {study.get('loadavg_after')} "
        "(a shared machine makes timings noisy)",
        f"- study wall time {study['wall_s']:.0f} s; each arm ran in its own process (pids below)",
        "",
        "## Results",
        "",
        *_md_table(headers(study), rows(study)),
        "",
        "`unavailable`: this machine cannot measure the figure (reason below); nothing is estimated. "
        "`(!)`: a flagged measurement (e.g. an energy window under 1 s). `-`: does not apply.",
        "",
    ]
    notes = []
    for a in study["arms"]:
        if a.get("reason"):
            notes.append(f"- {a['mode']}: {a['status']}: {a['reason']}")
        if a.get("stderr_tail"):
            notes += [f"  last lines of its stderr (`{a.get('log') or 'arms/'}`):", "", "  ```",
                      *(f"  {ln}" for ln in a["stderr_tail"]), "  ```", ""]  # fmt: skip
    warns = [f"- {a['mode']}: warning: {w}" for a in study["arms"] for w in a.get("warnings", [])]
    if study.get("interrupted"):
        notes.insert(0, "- **the study was interrupted**: arms that had not finished were stopped")
    if notes or warns:
        lines += ["## Skipped, failed and warned arms", "", *notes, *warns, ""]
    lines += command_lines(study)
    lines += ["## Plots", "", *(f"![{p.stem}]({p.name})" for p in plots), ""]
    lines += ["## How each figure was measured", "", *_methods(study), ""]
    lines += ["## Arm order and processes", "", "| # | precision | seed | pid | TF32 matmul / cuDNN (read in the arm) | threads |",
              "| --- | --- | --- | --- | --- | --- |"]  # fmt: skip
    by_key = {(r["mode"], r["seed"]): r for a in study["arms"] for r in a.get("runs", [])}
    for o in study["arm_order"]:
        run = by_key.get((o["mode"], o["seed"]), {})
        fl = run.get("flags", {})
        tf32 = f"{fl.get('cuda_matmul_allow_tf32')} / {fl.get('cudnn_allow_tf32')}" if fl else "-"
        pid = " ".join(map(str, o["rank_pids"])) if o.get("rank_pids") else o["pid"]  # every rank's pid
        lines.append(
            f"| {o['index']} | {o['mode']} | {o['seed']} | {pid} | {tf32} | {run.get('threads', '-')} |"
        )
    lines.append(
        f"\nParent process pid {study['parent_pid']}. Full data: `results.json`; one row per arm: `results.csv`.\n"
    )
    write_atomic(path, "\n".join(lines))
