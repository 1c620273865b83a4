"""``ampkit compare --log``: the trackers of a study, written by the parent process.

After each arm run ends, :meth:`StudyTrackers.on_arm` writes its TensorBoard run
(``<out>/tensorboard/<mode>-seed<N>/``) and its MLflow run (named the same, in one experiment
for the study) from the arm's record; after ``results.json``, the CSV, ``report.md`` and the
plots are written, :meth:`StudyTrackers.finish` attaches them to every MLflow run of the study.
The arms themselves never import a tracker, so what they measure is not disturbed. A tracker
that fails to write warns once and is turned off: the study goes on.
"""

from __future__ import annotations

import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .from_results import record_scalars, write_mlflow, write_tensorboard


class StudyTrackers:
    """The trackers of one study (one experiment of a study file) whose outputs go to ``out``."""

    def __init__(
        self,
        names: Sequence[str],
        out: Path,
        exp: Any,
        *,
        experiment: str,
        mlflow_uri: str | None = None,
        command: str = "compare",
    ):
        from .mlflow import resolve_uri

        self.names, self.out, self.exp, self.experiment = list(names), Path(out), exp, experiment
        self.uri = resolve_uri(mlflow_uri, self.out) if "mlflow" in self.names else None
        self.command = command
        self.runs: list[tuple[Any, str]] = []  # (MLflowRun, arm label)
        self.labels: list[str] = []

    def _params(self, record: dict[str, Any]) -> dict[str, Any]:
        mode, seed = record["mode"], record.get("seed")
        if self.exp.command is not None:
            return {"precision": mode, "arm": mode, "seed": seed, "command": shlex.join(self.exp.command)}
        config = self.exp.train_config(mode, seed).to_dict()
        if config.get("lr") is None:  # the task's default: the rate the arm really used
            config["lr"] = (record.get("step_stats") or {}).get("lr")
        return {**config, "arm": mode, "seed": seed, "warmup_steps": self.exp.warmup_steps}

    def _guard(self, name: str, action: Any) -> None:
        try:
            action()
        except Exception as err:
            print(
                f"ampkit {self.command}: warning: {name}: stopped logging: {type(err).__name__}: {err}",
                file=sys.stderr,
            )
            self.names.remove(name)

    def on_arm(self, record: dict[str, Any]) -> None:
        """Write the trackers of one finished arm run (measured, flagged or failed)."""
        status = record.get("status")
        if status not in ("measured", "flagged", "failed") or not self.names:
            return
        label = f"{record['mode']}-seed{record.get('seed')}"
        params = self._params(record)
        scalars = record_scalars(record) if status != "failed" else {}
        notes = "\n\n".join(f"warning: {w}" for w in record.get("warnings") or [])
        if "tensorboard" in self.names and status != "failed":
            log_dir = self.out / "tensorboard" / label
            self._guard(
                "tensorboard",
                lambda: write_tensorboard(
                    log_dir, scalars, params, describe=record.get("describe"), notes=notes
                ),
            )
        if "mlflow" in self.names and self.uri is not None:
            uri = self.uri
            tags = {"ampkit.study": self.exp.name, "ampkit.status": str(status)}
            if record.get("reason"):
                tags["ampkit.reason"] = str(record["reason"])
            if record.get("describe"):
                tags["ampkit.describe"] = str(record["describe"])

            def mlflow() -> None:
                run = write_mlflow(
                    uri, self.experiment, label, scalars, params, tags=tags, failed=status == "failed"
                )
                self.runs.append((run, label))

            self._guard("mlflow", mlflow)
        self.labels.append(label)

    def finish(self, paths: Sequence[Path]) -> list[str]:
        """Attach the study's outputs (results.json, CSV, report.md, plots) and each arm's own record
        to its MLflow run; returns one line per tracker saying where its runs are."""

        def attach() -> None:
            for run, label in self.runs:
                for path in paths:
                    if path.is_file():
                        run.artifact(path, "plots" if path.suffix == ".png" else None)
                arm = self.out / "arms" / f"{label}.json"
                if arm.is_file():
                    run.artifact(arm, "arm")

        if "mlflow" in self.names and self.runs:
            self._guard("mlflow", attach)
        lines = []
        if "tensorboard" in self.names and self.labels:
            lines.append(
                f"tensorboard: {self.out / 'tensorboard'}/ (tensorboard --logdir {self.out / 'tensorboard'})"
            )
        if "mlflow" in self.names and self.runs:
            lines.append(f"mlflow: {len(self.runs)} run(s) in experiment {self.experiment!r} at {self.uri}")
        return lines
