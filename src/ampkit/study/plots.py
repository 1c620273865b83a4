"""Study plots (matplotlib, Agg backend): loss curves and bars, one series per measured arm, axes with units."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

#: One colour per canonical mode, so an arm has the same colour in every plot of every study.
COLOURS = {
    "fp64": "#7f7f7f",
    "fp32": "#1f77b4",
    "tf32": "#17becf",
    "bf16-mixed": "#ff7f0e",
    "fp16-mixed": "#2ca02c",
    "bf16-true": "#d62728",
    "fp16-true": "#9467bd",
}


def _smooth(values: list[float], window: int) -> list[float]:
    """Trailing moving average (the first points average what exists so far)."""
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += v
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


def _mean_curve(arm: dict[str, Any]) -> list[float]:
    curves = [r["loss_curve"] for r in arm["runs"] if r.get("status") == "measured"]
    length = min(len(c) for c in curves)
    return [sum(c[i] for c in curves) / len(curves) for i in range(length)]


def _bars(
    ax: Any, arms: list[dict[str, Any]], key: str, scale: float, err_key: str | None = None
) -> list[str]:
    """Bars of ``summary[key] * scale``; returns the modes that had no value."""
    missing = []
    for i, arm in enumerate(arms):
        fig = arm["summary"].get(key)
        if not fig or fig.get("value") is None:
            missing.append(arm["mode"])
            continue
        value = fig["value"] * scale
        err = None
        if err_key and arm["summary"].get(err_key, {}).get("value") is not None:
            err = [[0], [arm["summary"][err_key]["value"] * scale - value]]
        elif fig.get("std") is not None:
            err = [[fig["std"] * scale], [fig["std"] * scale]]
        ax.bar(i, value, color=COLOURS.get(arm["mode"], "#444444"), label=arm["mode"], yerr=err, capsize=4)
    ax.set_xticks(range(len(arms)), [a["mode"] for a in arms])
    ax.set_xlim(-0.6, len(arms) - 0.4)
    ax.set_xlabel("precision (one bar per arm)")
    return missing


def write_plots(study: dict[str, Any], out: Path) -> list[Path]:
    """Write the PNGs into ``out``; returns their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    arms = [a for a in study["arms"] if a.get("summary")]
    if not arms:
        return []
    paths = []
    steps, warmup = study["settings"]["steps"], study["settings"]["warmup_steps"]
    window = max(1, steps // 30)
    seeds = len(study["settings"]["seeds"])
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for arm in arms:
        curve = _smooth(_mean_curve(arm), window)
        ax.plot(range(1, len(curve) + 1), curve, color=COLOURS.get(arm["mode"]), label=arm["mode"], lw=1.6)
    if warmup:
        ax.axvspan(0, warmup, color="#dddddd", alpha=0.6, label=f"warm-up ({warmup} steps, not timed)")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("training loss (task loss, fp32; unitless)")
    ax.set_title(
        f"{study['task']}: training loss, mean of {seeds} seed(s)"
        + (f", moving average of {window} steps" if window > 1 else ""),
        fontsize=10,
    )
    ax.legend()
    paths.append(_save(fig, out / "loss_curves.png", plt))

    metric = arms[0]["summary"]["metric_name"]
    bar_specs = [
        ("step_time.png", "step_time_median_s", 1e3, "median step time (ms)", "step_time_p90_s",
         "step time after warm-up: bar = median, whisker = p90"),
        ("peak_memory.png", "peak_mem_allocated_bytes" if "peak_mem_allocated_bytes" in arms[0]["summary"]
         else "peak_rss_bytes", 2**-20, "peak memory (MiB)", None,
         "peak memory: GPU max_memory_allocated after warm-up / CPU peak RSS of the arm process"),
        ("energy.png", "energy_j", 1.0, "energy over the timed steps (J)", None, "energy (counter-measured only)"),
        ("metric_delta.png", "metric_delta", 1.0, f"Δ eval {metric} vs fp32 (absolute)", None,
         f"eval {metric} minus the fp32 arm's"),
    ]  # fmt: skip
    for name, key, scale, ylabel, err_key, title in bar_specs:
        fig, ax = plt.subplots(figsize=(6.5, 4))
        missing = _bars(ax, arms, key, scale, err_key)
        ax.set_ylabel(ylabel)
        ax.set_title(title, fontsize=10)
        if key == "metric_delta":
            ax.axhline(0, color="black", lw=0.8)
        if missing:
            reason = _reason(arms, key)
            ax.text(0.5, 0.5, f"unavailable for {', '.join(missing)}:\n{reason}", ha="center", va="center",
                    transform=ax.transAxes, wrap=True, fontsize=9)  # fmt: skip
        paths.append(_save(fig, out / name, plt))
    return paths


def _reason(arms: list[dict[str, Any]], key: str) -> str:
    for arm in arms:
        fig = arm["summary"].get(key) or {}
        if fig.get("unavailable"):
            return textwrap.fill(str(fig["unavailable"]), 60)
    return "not measured"


def _save(fig: Any, path: Path, plt: Any) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
