"""Trackers written after the fact, from what a run recorded: a study arm's record (``results.json``
``arms[].runs[]``) or a :class:`~ampkit.engine.RunResult` (``metrics.json``).

The tags are those of the live hooks (:mod:`.base`); the values are the recorded ones, so the
``final/*`` metrics equal ``results.json`` / ``metrics.json`` exactly.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ...engine import RunResult
from .base import eval_scalars, figure_scalars, finite, step_scalars

log = logging.getLogger("ampkit")

Scalars = dict[int, dict[str, float]]


def _at(values: list[Any] | None, i: int) -> Any:
    return values[i] if values is not None and i < len(values) else None


def record_scalars(record: Mapping[str, Any]) -> Scalars:
    """Scalars by step of one study arm run (a task arm or a command arm)."""
    out: Scalars = defaultdict(dict)
    if record.get("kind") == "command":  # every value the script logged, at its step
        for name, points in (record.get("series") or {}).items():
            for i, (step, _t, value) in enumerate(points):
                if finite(value) is not None:
                    out[int(step) if step is not None else i + 1][f"script/{name}"] = float(value)
    else:
        stats = record.get("step_stats") or {}
        skipped = 0
        for i, loss in enumerate(record.get("loss_curve") or []):
            applied = _at(stats.get("applied"), i)
            skipped += applied is False
            out[i + 1].update(
                step_scalars(
                    loss,
                    _at(record.get("step_times_s"), i),
                    lr=stats.get("lr"),
                    loss_scale=_at(stats.get("loss_scale"), i),
                    grad_norm=_at(stats.get("grad_norm"), i),
                    skipped=skipped if applied is not None else None,
                    items=stats.get("items_per_step"),
                )
            )
        for ev in record.get("evals") or []:
            metrics = {k: v for k, v in ev.items() if k not in ("step", "elapsed_s")}
            out[int(ev["step"])].update(eval_scalars(metrics, "eval"))
    last = max(out, default=1)
    out[last].update(eval_scalars(record.get("final") or {}, "final"))
    out[last].update(figure_scalars(record.get("figures") or {}))
    return dict(out)


def result_scalars(result: RunResult) -> Scalars:
    """Scalars by step of a training run (what the live hooks log, less memory and energy)."""
    out: Scalars = defaultdict(dict)
    skipped = 0
    for r in result.history:
        skipped += not r.applied
        out[r.step].update(
            step_scalars(
                r.loss,
                r.time_s,
                loss_scale=r.loss_scale,
                grad_norm=r.grad_norm,
                skipped=skipped,
                items=r.items,
            )
        )
    for ev in result.evals:
        out[ev.step].update(eval_scalars(ev.metrics, "eval"))
    last = result.history[-1].step if result.history else max(out, default=1)
    out[last].update(eval_scalars(result.final, "final"))
    out[last]["summary/skipped_steps"] = float(result.skipped_steps)
    median = result.median_step_time()
    if median is not None:
        out[last]["summary/step_time_median_s"] = median
    return dict(out)


def write_tensorboard(
    log_dir: Path,
    scalars: Scalars,
    params: Mapping[str, Any],
    *,
    describe: str | None = None,
    notes: str = "",
) -> None:
    """One TensorBoard run in ``log_dir`` (event files of an earlier run there are replaced)."""
    from .tensorboard import TensorBoardRun

    run = TensorBoardRun(log_dir, replace=True)
    try:
        for step in sorted(scalars):
            run.scalars(scalars[step], step)
        run.describe(params, describe, notes)
        final = {k: v for step in scalars.values() for k, v in step.items() if k.startswith("final/")}
        run.hparams(params, final)
    finally:
        run.close()


def write_mlflow(
    uri: str,
    experiment: str,
    run_name: str,
    scalars: Scalars,
    params: Mapping[str, Any],
    *,
    tags: Mapping[str, str] | None = None,
    failed: bool = False,
) -> Any:
    """One MLflow run with ``params`` and every scalar at its step; returns the (ended) run."""
    from .mlflow import MLflowRun

    run = MLflowRun(uri, experiment, run_name, tags=tags)
    try:
        run.params(params)
        for step in sorted(scalars):
            run.metrics(scalars[step], step)
    except BaseException:
        run.end(failed=True)
        raise
    run.end(failed=failed)
    return run


def log_train_result(
    names: tuple[str, ...], result: RunResult, out: Path, *, mlflow_uri: str | None = None
) -> list[str]:
    """``ampkit train --nproc N --log ...``: the trackers of a finished multi-process run, from its
    result (the ranks ran in other processes); returns what was written, one line each. A tracker
    that fails warns (one line) and the others are still written."""
    from .mlflow import resolve_uri

    params = {**result.config, "precision": result.precision}
    scalars = result_scalars(result)
    lines: list[str] = []

    def tensorboard() -> None:
        write_tensorboard(out / "tensorboard", scalars, params, describe=result.describe)
        lines.append(f"tensorboard: {out / 'tensorboard'}")

    def mlflow() -> None:
        uri = resolve_uri(mlflow_uri, out)
        tags = {"ampkit.task": result.task, "ampkit.describe": result.describe}
        run = write_mlflow(uri, out.resolve().name, result.precision, scalars, params, tags=tags)
        if (out / "metrics.json").is_file():
            run.artifact(out / "metrics.json")
        lines.append(f"mlflow: {uri} experiment {run.experiment!r} run {run.run_id}")

    for name, write in (("tensorboard", tensorboard), ("mlflow", mlflow)):
        if name in names:
            try:
                write()
            except Exception as err:
                log.warning("ampkit: warning: %s: not written: %s: %s", name, type(err).__name__, err)
    return lines
