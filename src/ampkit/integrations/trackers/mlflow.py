"""MLflow: one run per training run (or study arm) through ``MlflowClient``, by default into a local
file store under the run folder (``file:<out>/mlruns``).

MLflow 3 refuses its file store unless ``MLFLOW_ALLOW_FILE_STORE=true``: ampkit sets it only
around its own calls to a ``file:`` store (reading the store back needs it too; see
docs/trackers.md). Metrics are sent in batches (every 1,000 points or 5 s, and at the end).
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from ...engine import RunResult, RunSetup
from .base import flat_params
from .live import TrackerHook

#: Points per ``log_batch`` call (MLflow's REST limit is 1,000 metrics per batch).
BATCH = 1000
FLUSH_S = 5.0
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+:")


def local_store(uri: str) -> Path | None:
    """The folder of a ``file:`` tracking URI (or a plain path); None for databases and servers."""
    if not _SCHEME.match(uri):
        return Path(uri)
    parsed = urlparse(uri)
    return Path(unquote(parsed.path)) if parsed.scheme == "file" else None


def resolve_uri(uri: str | None, out: Path | None) -> str:
    """``uri`` as MLflow takes it: a path or ``file:`` URI made absolute; None -> ``out/mlruns``."""
    if uri is None:
        if out is None:
            raise ValueError("an MLflow tracking URI is needed when the run has no out folder")
        return (Path(out) / "mlruns").resolve().as_uri()
    folder = local_store(uri)
    return folder.resolve().as_uri() if folder is not None else uri


@contextlib.contextmanager
def allow_file_store(uri: str) -> Iterator[None]:
    """``MLFLOW_ALLOW_FILE_STORE=true`` for the body when ``uri`` is a file store (restored after)."""
    key = "MLFLOW_ALLOW_FILE_STORE"
    if local_store(uri) is None or key in os.environ:
        yield
        return
    os.environ[key] = "true"
    try:
        yield
    finally:
        os.environ.pop(key, None)


def metric_key(name: str) -> str:
    """A name MLflow accepts (letters, digits, ``_ - . /`` and space)."""
    return re.sub(r"[^\w\-. /]", "_", name)


class MLflowRun:
    """One MLflow run in ``experiment`` (created if missing) of the store at ``uri``."""

    def __init__(self, uri: str, experiment: str, run_name: str, *, tags: Mapping[str, str] | None = None):
        from mlflow.tracking import MlflowClient

        self.uri = uri
        with allow_file_store(uri):
            self.client = MlflowClient(tracking_uri=uri)
            found = self.client.get_experiment_by_name(experiment)
            if found is not None and found.lifecycle_stage == "deleted":
                self.client.restore_experiment(found.experiment_id)
            exp_id = found.experiment_id if found is not None else self.client.create_experiment(experiment)
            tags = {k: str(v)[:5000] for k, v in (tags or {}).items()}
            self.run_id = self.client.create_run(exp_id, run_name=run_name, tags=tags).info.run_id
        self.experiment, self.run_name = experiment, run_name
        self._pending: list[Any] = []
        self._flushed = time.monotonic()

    def params(self, values: Mapping[str, Any]) -> None:
        """Flattened ``values`` as run parameters (text, at most 6,000 characters each)."""
        from mlflow.entities import Param

        params = [Param(metric_key(k)[:250], str(v)[:6000]) for k, v in flat_params(values).items()]
        with allow_file_store(self.uri):
            for i in range(0, len(params), 100):
                self.client.log_batch(self.run_id, params=params[i : i + 100])

    def metrics(self, values: Mapping[str, float], step: int) -> None:
        """Queue ``values`` at ``step``; sent when the batch is full or 5 s passed."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self._pending += [Metric(metric_key(k), float(v), now, int(step)) for k, v in values.items()]
        if len(self._pending) >= BATCH or time.monotonic() - self._flushed > FLUSH_S:
            self.flush()

    def flush(self) -> None:
        """Send the queued metrics."""
        with allow_file_store(self.uri):
            while self._pending:
                batch, self._pending = self._pending[:BATCH], self._pending[BATCH:]
                self.client.log_batch(self.run_id, metrics=batch)
        self._flushed = time.monotonic()

    def artifact(self, path: Path, folder: str | None = None) -> None:
        """Copy the file ``path`` into the run's artifacts (under ``folder``)."""
        with allow_file_store(self.uri):
            self.client.log_artifact(self.run_id, str(path), artifact_path=folder)

    def end(self, failed: bool = False) -> None:
        """Send what is queued and mark the run FINISHED (or FAILED)."""
        self.flush()
        with allow_file_store(self.uri):
            self.client.set_terminated(self.run_id, "FAILED" if failed else "FINISHED")


class MLflowHook(TrackerHook):
    """Engine hook: one MLflow run, filled step by step.

    ``tracking_uri``: a folder, ``file:`` URI, ``sqlite:///...`` or server (default: ``file:`` of
    ``<out>/mlruns``); ``experiment`` (default: the out folder's name); ``run_name`` (default: the
    precision). Parameters: the precision, seed and every config field; metrics: those of
    :class:`~.tensorboard.TensorBoardHook`; ``metrics.json`` as an artifact.
    """

    name = "mlflow"

    def __init__(
        self, tracking_uri: str | None = None, experiment: str | None = None, run_name: str | None = None
    ):
        super().__init__()
        self.tracking_uri, self.experiment, self.run_name = tracking_uri, experiment, run_name
        self.run: MLflowRun | None = None
        self._out: Path | None = None

    def _open(self, run: RunSetup, first_step: int) -> None:
        config = run.config
        self._out = Path(config.out) if config.out is not None else None
        uri = resolve_uri(self.tracking_uri, self._out)
        experiment = self.experiment or (self._out.resolve().name if self._out else "ampkit")
        tags = {"ampkit.task": config.task, "ampkit.describe": run.precision.describe(run.model)}
        if first_step > 1:
            tags["ampkit.resumed_from"] = str(first_step - 1)
        self.run = MLflowRun(uri, experiment, self.run_name or run.precision.name, tags=tags)
        self.run.params(self.params)

    def _write(self, scalars: dict[str, float], step: int) -> None:
        assert self.run is not None
        self.run.metrics(scalars, step)

    def _finish(self, result: RunResult) -> None:
        assert self.run is not None
        self.run.flush()
        if result.precision != result.config.get("precision"):  # fell back during the run
            with allow_file_store(self.run.uri):
                self.run.client.set_tag(self.run.run_id, "ampkit.ended_in", result.precision)
        metrics = self._out / "metrics.json" if self._out is not None else None
        if metrics is not None and metrics.is_file():
            self.run.artifact(metrics)

    def _close(self, failed: bool) -> None:
        if self.run is not None:
            self.run.end(failed)
