"""The record of one command arm: status, what the script logged, and every figure with its method.

It has the shape of a task arm's record (``status``, ``final``, ``loss_curve``, ``figures``,
``metric_name``, ...), so the summary, the table, the CSV, report.md and the plots read both,
plus what only a command has: its argv and environment, exit code, the precision check and
every logged series.
"""

from __future__ import annotations

from typing import Any

from .arm_output import LogTail, OutputScanner
from .children import how_it_ended
from .command_figures import (
    final_values,
    loss_choice,
    pick_metric,
    series,
    step_figures,
    timeline,
    value_methods,
)
from .config import Experiment
from .meters import Figure, figure, unavailable
from .placeholders import uses_precision
from .precision_check import check_precision
from .tree_meter import GpuMeter, TreeMeter


def _energy(
    gpu: GpuMeter | str, window: tuple[float, float] | None, whole: tuple[float, float], steps: int
) -> dict[str, Figure]:
    if not isinstance(gpu, GpuMeter):
        reason = f"{gpu}; a command arm's energy is read from NVML only (nothing is estimated)"
        return {"energy_j": unavailable("J", reason), "energy_per_item_j": unavailable("J/step", reason)}
    t0, t1 = window or whole
    joules, how = gpu.joules_between(t0, t1)
    if joules is None:
        return {"energy_j": unavailable("J", how), "energy_per_item_j": unavailable("J/step", how)}
    span = "the timed steps (from the warm-up's last logged step to the last)" if window else "the whole arm"
    flags = [f"window {t1 - t0:.2f} s < 1 s: counter resolution dominates"] if t1 - t0 < 1.0 else []
    out = {"energy_j": figure(joules, "J", f"{how}; window = {span}", flags=flags)}
    out["energy_per_item_j"] = (
        figure(joules / steps, "J/step", f"{how}; window = {span}; ÷ {steps} timed steps", flags=flags)
        if window and steps
        else unavailable("J/step", "no timed steps")
    )
    return out


def _failure(code: int | None, scanner: OutputScanner) -> str:
    tail = list(scanner.stderr)
    last = tail[-1].strip() if tail else "no output on stderr"
    return f"command {how_it_ended(code)}: {last}"


def build_record(
    exp: Experiment,
    mode: str,
    seed: int,
    *,
    argv: list[str],
    env: dict[str, str],
    tree: TreeMeter,
    gpu: GpuMeter | str,
    tail: LogTail,
    scanner: OutputScanner,
    code: int | None,
    waited: dict[str, Any],
    started: float,
    ended: float,
    poll_s: float,
) -> dict[str, Any]:
    """The arm's JSON-ready record (``status`` measured, failed or, for the runner, interrupted)."""
    by_name = series(tail.records, scanner.records)
    parsed_names = {n for r in scanner.records for n in r["values"]} - {
        n for r in tail.records for n in r["values"]
    }
    points, source = timeline(tail.records, scanner.records, by_name)
    figures, window, timed = step_figures(points, exp.warmup_steps, source)
    figures["peak_rss_bytes"] = tree.figure(waited.get("maxrss_kib"), poll_s)
    if isinstance(gpu, GpuMeter):
        figures["peak_gpu_mem_bytes"] = gpu.memory_figure(poll_s * 2)
    figures.update(_energy(gpu, window, (started, ended), timed))
    metric, higher, why = pick_metric(by_name, exp.metric)
    check = check_precision(
        mode, scanner.proofs, tail.precisions,
        uses_ampkit=tail.events > 0 or scanner.ampkit_lines > 0,
        names_precision=uses_precision(exp.command or (), exp.env),
    )  # fmt: skip
    warnings = [check.warning] if check.warning else []
    if tail.invalid:
        warnings.append(
            f"{tail.invalid} line(s) of ampkit_log.jsonl were not valid ampkit.log events (skipped)"
        )
    if scanner.unparsable:
        warnings.append(
            f"--parse matched text that is not a number: {', '.join(sorted(scanner.unparsable)[:5])}"
        )
    if not by_name:
        warnings.append(
            "the script reported no values: call ampkit.log({...}, step=i) or give --parse with named groups"
        )
    loss = by_name.get("loss", [])
    loss_key, loss_title = loss_choice(by_name)
    record: dict[str, Any] = {
        "status": "measured" if code == 0 else "failed",
        "kind": "command",
        "mode": mode,
        "seed": seed,
        "pid": waited.get("pid") or (min(tree.peak_hwm_kib) if tree.peak_hwm_kib else None),
        "argv": argv,
        "env": env,
        "exit_code": code,
        "item_unit": "steps",
        "metric_name": metric,
        "metric_choice": why,
        "higher_is_better": higher,
        "loss_key": loss_key,
        "loss_title": loss_title,
        **value_methods(by_name, metric, loss_key, parsed_names),
        "final": final_values(by_name),
        "loss_curve": [v for _, _, v in loss],
        "loss_steps": [s for s, _, _ in loss] if loss and all(s is not None for s, _, _ in loss) else None,
        "step_log": [[s, t - started] for s, t in points],
        "step_source": source,
        "series": {name: [[s, t - started, v] for s, t, v in pts] for name, pts in by_name.items()},
        "figures": figures,
        "precision_check": {
            "status": check.status,
            "ran": check.ran,
            "evidence": check.evidence,
            "flagged": check.flagged,
        },
        "describe": next((d for _, d in tail.precisions if d), None)
        or next((line for _, line in scanner.proofs), None),
        "warnings": warnings,
        "wall_s": ended - started,
        "target": None,
    }
    if metric is None:
        record["metric_unavailable"] = why
    if code != 0:
        record["reason"] = _failure(code, scanner)
        record["stderr_tail"] = list(scanner.stderr)
    return record
