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
    "fp8-mixed": "#e377c2",
    "int8-qat": "#8c564b",
}
#: Line styles cycled over arms, so curves that coincide (bf16 tracking fp32) stay visible.
STYLES = ("-", "--", ":", "-.")
_SPARE = ("#bcbd22", "#000000", "#aec7e8", "#ffbb78")


def colour(mode: str, index: int) -> str:
    """The mode's fixed colour; unknown modes get a spare one by position."""
    return COLOURS.get(mode, _SPARE[index % len(_SPARE)])


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


def _steps(arm: dict[str, Any], length: int) -> list[int]:
    """x values of an arm's curve: the logged step numbers of a command arm, else 1..length."""
    runs = [r for r in arm["runs"] if r.get("status") == "measured"]
    logged = runs[0].get("loss_steps") if runs else None
    return list(logged[:length]) if logged and len(logged) >= length else list(range(1, length + 1))


def _bars(
    ax: Any, arms: list[dict[str, Any]], key: str, scale: float, err_key: str | None, label_fmt: str
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
        ax.bar(i, value, color=colour(arm["mode"], i), label=arm["mode"], yerr=err, capsize=4)
        # the value sits on the bar itself (bar_label would put it at the p90 whisker's end)
        ax.annotate(label_fmt.format(value), (i, value), xytext=(0, 2), textcoords="offset points",
                    ha="center", va="bottom", fontsize=8, bbox={"fc": "white", "ec": "none", "pad": 0.5})  # fmt: skip
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
    longest = max((len(r.get("loss_curve", [])) for a in arms for r in a["runs"]), default=0)
    window = max(1, (steps or longest) // 30)  # a command's steps are the script's own
    seeds = len(study["settings"]["seeds"])
    fig, (ax, diff) = plt.subplots(2, 1, figsize=(7.5, 6.4), sharex=True, height_ratios=(3, 2))
    curves = {arm["mode"]: _smooth(_mean_curve(arm), window) for arm in arms}
    base = curves.get("fp32")
    for i, arm in enumerate(arms):
        curve, style = curves[arm["mode"]], {"color": colour(arm["mode"], i), "ls": STYLES[i % len(STYLES)]}
        xs = _steps(arm, len(curve))
        ax.plot(xs, curve, label=arm["mode"], lw=1.6, **style)
        if base is not None and arm["mode"] != "fp32":
            n = min(len(curve), len(base))
            diff.plot(xs[:n], [curve[k] - base[k] for k in range(n)], label=arm["mode"], lw=1.4, **style)
    for axis in (ax, diff):
        if warmup:
            axis.axvspan(0, warmup, color="#dddddd", alpha=0.6, label=f"warm-up ({warmup} steps, not timed)")
    ax.set_ylabel("training loss (unitless)")
    ax.set_title(
        f"{textwrap.shorten(study['task'], 60)}: training loss, mean of {seeds} seed(s)"
        + (f", moving average of {window} steps" if window > 1 else ""),
        fontsize=10,
    )
    ax.legend(fontsize=8)
    diff.axhline(0, color="black", lw=0.8)
    diff.set_xlabel("optimizer step")
    diff.set_ylabel("loss − fp32 loss (unitless)")
    if base is None:
        diff.text(0.5, 0.5, "no fp32 arm to compare with", ha="center", va="center", transform=diff.transAxes)
    paths.append(_save(fig, out / "loss_curves.png", plt))

    metric = arms[0]["summary"]["metric_name"]
    gpu = "peak_mem_allocated_bytes" in arms[0]["summary"]
    nvml = "peak_gpu_mem_bytes" in arms[0]["summary"]  # a command arm on a GPU machine
    bar_specs = [
        ("step_time.png", "step_time_median_s", 1e3, "median step time (ms)", "step_time_p90_s",
         "step time after warm-up: bar = median, whisker = p90", "{:.1f}"),
        ("peak_memory.png", "peak_mem_allocated_bytes" if gpu else "peak_gpu_mem_bytes" if nvml else "peak_rss_bytes",
         2**-20, "peak memory (MiB)", None, "GPU max_memory_allocated after warm-up" if gpu else
         "GPU memory of each arm's processes (NVML)" if nvml else "peak RSS of each arm's process (tree)", "{:.0f}"),
        ("energy.png", "energy_j", 1.0, "energy over the timed steps (J)", None,
         "energy (counter-measured only)", "{:.1f}"),
        ("metric_delta.png", "metric_delta", 1.0, f"Δ eval {metric} vs fp32 (absolute)", None,
         f"eval {metric} minus the fp32 arm's", "{:+.4f}"),
    ]  # fmt: skip
    for name, key, scale, ylabel, err_key, title, label_fmt in bar_specs:
        fig, ax = plt.subplots(figsize=(6.5, 4))
        missing = _bars(ax, arms, key, scale, err_key, label_fmt)
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
    from ..fsutil import atomic_open

    fig.tight_layout()
    with atomic_open(path, "wb") as handle:
        fig.savefig(handle, dpi=110, format="png")
    plt.close(fig)
    return path
