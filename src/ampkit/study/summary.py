"""Per-precision summaries of a study: mean ± std over seeds, deltas and speedups against fp32.

Every summarised figure keeps the method of the per-seed figures it came from, plus how it
was combined. A figure that any seed could not measure stays ``unavailable`` with the reason.
"""

from __future__ import annotations

import statistics
from typing import Any

from .meters import Figure, unavailable

#: The figures every row shows, in order: key in the per-seed ``figures`` dict.
FIGURE_KEYS = (
    "step_time_median_s",
    "step_time_p90_s",
    "throughput",
    "peak_mem_allocated_bytes",
    "peak_mem_reserved_bytes",
    "peak_rss_bytes",
    "energy_j",
    "energy_per_item_j",
    "skipped_steps",
    "final_loss_scale",
    "flops_per_step",
    "achieved_tflops",
    "mfu",
)


def combine(figs: list[Figure]) -> Figure:
    """Mean ± std (sample std, n >= 2) of the same figure over seeds."""
    missing = [f for f in figs if f.get("value") is None]
    if not figs:
        return unavailable("", "no measured run")
    if missing:
        reason = missing[0].get("unavailable") or "not measured"
        return unavailable(figs[0].get("unit", ""), reason)
    values = [float(f["value"]) for f in figs]
    flags = sorted({flag for f in figs for flag in f.get("flags", [])})
    out: Figure = {
        "value": statistics.fmean(values),
        "std": statistics.stdev(values) if len(values) > 1 else None,
        "n": len(values),
        "unit": figs[0].get("unit", ""),
        "method": figs[0]["method"] + (f"; mean ± std over {len(values)} seeds" if len(values) > 1 else ""),
    }
    if flags:
        out["flags"] = flags
    return out


def _metric(runs: list[dict[str, Any]], key: str, name: str) -> Figure:
    values = [float(r["final"][key]) for r in runs if key in r.get("final", {})]
    if not values:
        return unavailable("", "no measured run")
    return {
        "value": statistics.fmean(values),
        "std": statistics.stdev(values) if len(values) > 1 else None,
        "n": len(values),
        "unit": "",
        "method": f"{name} on the task's fixed held-out set after the last step"
        + (f"; mean ± std over {len(values)} seeds" if len(values) > 1 else ""),
    }


def summarize_arm(arm: dict[str, Any]) -> dict[str, Any]:
    """Summary figures of one arm (empty for skipped arms and arms with no measured run)."""
    runs = [r for r in arm.get("runs", []) if r.get("status") == "measured"]
    if not runs:
        return {}
    metric_name = runs[0]["metric_name"]
    out: dict[str, Any] = {
        "metric_name": metric_name,
        "item_unit": runs[0]["item_unit"],
        "metric": _metric(runs, metric_name, f"eval {metric_name}"),
        "eval_loss": _metric(runs, "loss", "eval loss"),
    }
    for key in FIGURE_KEYS:
        figs = [r["figures"][key] for r in runs if key in r["figures"]]
        if figs:
            out[key] = combine(figs)
    targets = [r["target"] for r in runs if r.get("target")]
    if targets:
        reached = [t for t in targets if t.get("reached")]
        out["target"] = {
            "target": targets[0]["target"],
            "reached": f"{len(reached)}/{len(targets)} seeds",
            **{k: combine([t[k] for t in reached]) for k in ("steps", "time_s", "energy_j") if reached},
        }
    return out


def add_comparisons(arms: list[dict[str, Any]]) -> None:
    """Deltas of metric and loss and the step-time speedup, each against the fp32 arm (in place)."""
    base = next((a["summary"] for a in arms if a["mode"] == "fp32" and a.get("summary")), None)
    for arm in arms:
        s = arm.get("summary")
        if not s:
            continue
        if base is None:
            s["metric_delta"] = s["loss_delta"] = s["speedup"] = unavailable(
                "", "no fp32 arm to compare with"
            )
            continue
        for key, delta in (("metric", "metric_delta"), ("eval_loss", "loss_delta")):
            s[delta] = {
                "value": s[key]["value"] - base[key]["value"],
                "unit": "",
                "method": f"mean {key} of this arm − mean of the fp32 arm",
            }
        mine, ref = (
            s.get("step_time_median_s", {}).get("value"),
            base.get("step_time_median_s", {}).get("value"),
        )
        s["speedup"] = (
            {
                "value": ref / mine,
                "unit": "x",
                "method": "fp32 median step time ÷ this arm's median step time",
            }
            if mine and ref
            else unavailable("x", "no step time")
        )


def summarize(study: dict[str, Any]) -> dict[str, Any]:
    """Fill ``summary`` into every arm of ``study`` and return the study."""
    for arm in study["arms"]:
        arm["summary"] = summarize_arm(arm)
    add_comparisons(study["arms"])
    return study
