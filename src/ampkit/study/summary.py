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
    "peak_rss_added_bytes",
    "peak_gpu_mem_bytes",
    "energy_j",
    "energy_per_item_j",
    "skipped_steps",
    "final_loss_scale",
    "flops_per_step",
    "achieved_tflops",
    "mfu",
    "compile_time_s",
    "first_step_s",
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


def _metric(
    runs: list[dict[str, Any]], key: str | None, method: str, missing: str = "no measured run"
) -> Figure:
    values = [float(r["final"][key]) for r in runs if key is not None and key in r.get("final", {})]
    if not values:
        return unavailable("", missing)
    return {
        "value": statistics.fmean(values),
        "std": statistics.stdev(values) if len(values) > 1 else None,
        "n": len(values),
        "unit": "",
        "method": method + (f"; mean ± std over {len(values)} seeds" if len(values) > 1 else ""),
    }


def summarize_arm(arm: dict[str, Any]) -> dict[str, Any]:
    """Summary figures of one arm (empty for skipped arms and arms with no measured run).

    Task arms' metric and loss are evaluations on the task's held-out set; a command arm's
    records say how its own were read (``metric_method``, ``loss_method``, ``loss_title``).
    """
    runs = [r for r in arm.get("runs", []) if r.get("status") == "measured"]
    if not runs:
        return {}
    first = runs[0]
    metric_name = first["metric_name"]
    held_out = "on the task's fixed held-out set after the last step"
    out: dict[str, Any] = {
        "metric_name": metric_name or "metric",
        "item_unit": first["item_unit"],
        "higher_is_better": first.get("higher_is_better", True),
        "loss_title": first.get("loss_title", "eval loss"),
        "metric": _metric(
            runs, metric_name, first.get("metric_method", f"eval {metric_name} {held_out}"),
            first.get("metric_unavailable", "no measured run"),
        ),
        "eval_loss": _metric(
            runs, first.get("loss_key", "loss"), first.get("loss_method", f"eval loss {held_out}"),
            "the script reported no loss",
        ),
    }  # fmt: skip
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
    # the eager fp32 arm; with --compile on (no eager arm), the compiled one
    base = next((a["summary"] for a in arms if a["mode"] == "fp32" and a.get("summary")), None) or next(
        (a["summary"] for a in arms if a["mode"] == "fp32+compile" and a.get("summary")), None
    )
    add_compile_speedups(arms)
    for arm in arms:
        s = arm.get("summary")
        if not s:
            continue
        if base is None:
            s["metric_delta"] = s["loss_delta"] = s["speedup"] = s["memory_vs_fp32"] = unavailable(
                "", "no fp32 arm to compare with"
            )
            continue
        for key, delta in (("metric", "metric_delta"), ("eval_loss", "loss_delta")):
            mine_v, ref_v = s[key].get("value"), base[key].get("value")
            s[delta] = (
                {
                    "value": mine_v - ref_v,
                    "unit": "",
                    "method": f"mean {key} of this arm − mean of the fp32 arm",
                }
                if mine_v is not None and ref_v is not None
                else unavailable("", f"{key} unavailable in this arm or the fp32 arm")
            )
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
        s["memory_vs_fp32"] = memory_ratio(s, base)


MEMORY_KEYS = ("peak_mem_allocated_bytes", "peak_gpu_mem_bytes", "peak_rss_added_bytes", "peak_rss_bytes")
"""The figure a memory ratio is taken on, first present in both arms: the GPU allocator's peak, a
command's NVML peak, the CPU peak above the arm's RSS before its model was built, whole RSS."""


def memory_ratio(s: dict[str, Any], base: dict[str, Any]) -> dict[str, Any]:
    """This arm's peak memory over the fp32 arm's, on the first of :data:`MEMORY_KEYS` both have."""
    for key in MEMORY_KEYS:
        mine, ref = s.get(key, {}).get("value"), base.get(key, {}).get("value")
        if mine and ref:
            return {"value": mine / ref, "unit": "x", "method": f"this arm's {key} ÷ the fp32 arm's"}
    return unavailable("x", "no memory figure in both this arm and the fp32 arm")


def summarize(study: dict[str, Any]) -> dict[str, Any]:
    """Fill ``summary`` into every arm of ``study`` and return the study."""
    for arm in study["arms"]:
        arm["summary"] = summarize_arm(arm)
    add_comparisons(study["arms"])
    return study


def add_compile_speedups(arms: list[dict[str, Any]]) -> None:
    """``--compile both``: each ``MODE+compile`` arm's step-time speedup over the eager ``MODE`` arm."""
    eager = {a["mode"]: a.get("summary") for a in arms}
    for arm in arms:
        s, mode = arm.get("summary"), arm["mode"]
        base = eager.get(mode.removesuffix("+compile")) if mode.endswith("+compile") else None
        if not s or not base:
            continue
        mine, ref = (x.get("step_time_median_s", {}).get("value") for x in (s, base))
        s["compile_speedup"] = (
            {"value": ref / mine, "unit": "x", "method": f"{mode.removesuffix('+compile')} eager median step "
             "time ÷ this compiled arm's median step time (warm-up, where the compile happens, excluded)"}
            if mine and ref
            else unavailable("x", "no step time")
        )  # fmt: skip
