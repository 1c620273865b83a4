"""Figures of a command arm from what its script logged: series, step times, metric, final loss.

``ampkit.log`` is the authoritative source: a value name it logged is read from it alone; the
``--parse`` matches fill the names it did not log. Step times come from the timestamps of
consecutive logged steps (``ampkit.log`` records where any carry a step, else parsed lines with
a ``step`` group, else each parsed ``loss`` line as one step), divided by the steps between
them; the first ``warmup_steps`` steps are left out, the rule of task arms.
"""

from __future__ import annotations

import itertools
import statistics
from typing import Any

from .meters import Figure, figure, percentile, unavailable

Point = tuple[int | None, float, float]
#: Value names taken as the accuracy-like figure when ``--metric`` names none (first found).
DEFAULT_METRICS = ("accuracy", "acc", "val_accuracy", "val_acc", "eval_accuracy", "eval_acc")
#: Evaluation losses preferred for the loss column (first found), over the last training loss.
EVAL_LOSSES = ("val_loss", "eval_loss", "valid_loss", "validation_loss", "test_loss")
#: Intervals shorter than this between two logged steps are taken as lines read in one burst ...
BURST_S = 1e-4
#: ... and more than this share of them flags the step times.
BURST_SHARE = 0.25
#: Name fragments of lower-is-better metrics (``--metric NAME`` without ``:max``/``:min``).
LOWER_BETTER = ("loss", "err", "perplexity", "ppl", "mse", "mae", "rmse", "wer", "cer")


def parse_metric(spec: str) -> tuple[str, bool | None]:
    """``"acc:max"`` -> ``("acc", True)``; ``"loss"`` -> ``("loss", None)`` (direction from the name)."""
    name, sep, how = spec.rpartition(":")
    if sep and how in ("max", "min"):
        return name, how == "max"
    return spec, None


def _dedupe(points: list[Point]) -> list[Point]:
    """Consecutive points of the same step (several calls or ranks per step): the first one stays."""
    out: list[Point] = []
    for p in points:
        if out and p[0] is not None and p[0] == out[-1][0]:
            continue
        out.append(p)
    return out


def series(log_records: list[dict[str, Any]], parsed: list[dict[str, Any]]) -> dict[str, list[Point]]:
    """name -> ``[(step, time, value), ...]`` in arrival order; ampkit.log's names win over parsed ones."""
    out: dict[str, list[Point]] = {}
    for records in (log_records, parsed):
        mine: dict[str, list[Point]] = {}
        for rec in records:
            for name, value in rec["values"].items():
                if name not in out:
                    mine.setdefault(name, []).append((rec["step"], rec["time"], value))
        out.update({k: _dedupe(v) for k, v in mine.items()})
    return out


def timeline(
    log_records: list[dict[str, Any]], parsed: list[dict[str, Any]], by_name: dict[str, list[Point]]
) -> tuple[list[tuple[int, float]], str]:
    """``[(step, time)]`` of the logged steps with where they came from; steps that do not increase
    (an epoch restarting its count) are renumbered by order of arrival."""
    sources = (
        (log_records, "ampkit.log records' time (the script's clock)"),
        (parsed, "the time the study read each --parse line with a step"),
    )
    found = [(r, s) for r, s in sources if any(rec["step"] is not None for rec in r)]
    if not found:
        loss = by_name.get("loss", [])
        how = "the time of each loss value (no step numbers were logged: one value = one step)"
        return [(i + 1, t) for i, (_, t, _) in enumerate(loss)], how
    records, source = found[0]
    stepped = [(r["step"], r["time"]) for r in records if r["step"] is not None]
    points: list[tuple[int, float]] = []
    for step, when in stepped:
        if points and step == points[-1][0]:
            continue
        points.append((step, when))
    if any(b[0] <= a[0] for a, b in itertools.pairwise(points)):
        how = source + "; step numbers did not increase, each logged step counted as one"
        return [(i + 1, t) for i, (_, t) in enumerate(points)], how
    return points, source


def step_figures(
    points: list[tuple[int, float]], warmup: int, source: str
) -> tuple[dict[str, Figure], tuple[float, float] | None, int]:
    """Median/p90 step time and steps/s over the steps after warm-up; the timed window; steps timed."""
    per_step: list[float] = []
    window: tuple[float, float] | None = None
    bursts = intervals = 0
    for (s0, t0), (s1, t1) in itertools.pairwise(points):
        if s0 < warmup:
            continue
        per_step += [(t1 - t0) / (s1 - s0)] * (s1 - s0)
        window = (window[0] if window else t0, t1)
        intervals += 1
        bursts += t1 - t0 < BURST_S
    if not per_step or window is None:
        last = points[-1][0] if points else 0
        reason = (
            f"{len(points)} logged step(s), the last step {last}; warm-up is {warmup} steps, so no interval "
            "after it was logged (lower --warmup-steps, or log more steps)"
        )
        return (
            {"step_time_median_s": unavailable("s", reason), "throughput": unavailable("steps/s", reason)},
            None,
            0,
        )
    first = next(s for s, _ in points if s >= warmup)
    how = (
        f"intervals between the timestamps of consecutive logged steps ({source}) ÷ the steps between them, "
        f"over steps {first + 1}-{points[-1][0]} ({len(per_step)} steps, warm-up excluded); includes all the "
        "script does between steps (data loading, logging, evaluation)"
    )
    seconds = window[1] - window[0]
    if bursts > intervals * BURST_SHARE:  # lines read together: the clock did not see the steps apart
        # Per-step intervals are then an artefact of how the lines were read (a median of ~0 gave a
        # 29x "speed-up"); the mean over the whole timed window is still an honest step time.
        burst = (
            f"{bursts} of {intervals} intervals under {BURST_S * 1e3:g} ms: the steps' lines arrived in bursts "
            "(buffered output, or steps faster than the study reads), so single steps could not be timed; "
            "ampkit.log carries the script's own clock"
        )
        mean = seconds / len(per_step) if seconds > 0 else None
        median = figure(
            mean, "s", f"mean over the timed window (not a median: {burst}) of {how}", flags=[burst]
        )
        p90 = unavailable("s", burst)
    else:
        median = figure(statistics.median(per_step), "s", f"median of {how}")
        p90 = figure(percentile(per_step, 90), "s", f"p90 of {how}")
    return (
        {
            "step_time_median_s": median,
            "step_time_p90_s": p90,
            "throughput": figure(
                len(per_step) / seconds if seconds > 0 else None, "steps/s", f"steps ÷ elapsed time, {how}"
            ),
        },
        window,
        len(per_step),
    )


def pick_metric(by_name: dict[str, list[Point]], spec: str | None) -> tuple[str | None, bool, str]:
    """``(name, higher_is_better, why)``: the named metric, else the first of :data:`DEFAULT_METRICS` logged."""
    if spec:
        name, higher = parse_metric(spec)
        if higher is None:
            higher = not any(f in name.lower() for f in LOWER_BETTER)
        if name not in by_name:
            logged = ", ".join(sorted(by_name)) or "none"
            return (
                None,
                higher,
                f"--metric {name}: the script logged no value named {name!r} (logged: {logged})",
            )
        return name, higher, f"--metric {spec}"
    for name in DEFAULT_METRICS:
        if name in by_name:
            return (
                name,
                True,
                f"{name!r} logged (the default accuracy-like names: {', '.join(DEFAULT_METRICS)})",
            )
    return None, True, "the script logged no accuracy-like value (name one with --metric NAME[:max|:min])"


def final_values(by_name: dict[str, list[Point]]) -> dict[str, float]:
    """The last logged value of every name."""
    return {name: pts[-1][2] for name, pts in by_name.items() if pts}


def loss_choice(by_name: dict[str, list[Point]]) -> tuple[str, str]:
    """``(name, column title)`` of the loss a row shows: an evaluation loss the script logged
    (comparable with a task study's eval loss), else its last training ``loss``."""
    for name in EVAL_LOSSES:
        if name in by_name:
            return name, name
    return "loss", "final loss"


def value_methods(
    by_name: dict[str, list[Point]], metric: str | None, loss: str, parsed_names: set[str]
) -> dict[str, str]:
    """How the metric and the loss column were read, for the report."""

    def src(name: str) -> str:
        return (
            "parsed by --parse from the script's output"
            if name in parsed_names
            else "logged through ampkit.log"
        )

    what = "a training loss, not an evaluation" if loss == "loss" else "the script's own evaluation"
    out = {"loss_method": f"last '{loss}' value the script reported ({src(loss)}), {what}"}
    if metric:
        count = len(by_name[metric])
        out["metric_method"] = f"last of {count} '{metric}' value(s) the script reported ({src(metric)})"
    return out
