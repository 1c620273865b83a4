"""TensorBoard: event files written with ``torch.utils.tensorboard`` (the ``tensorboard`` package's
event writer; TensorFlow is not needed).

:class:`TensorBoardRun` is one run folder (scalars, text, hparams); :class:`TensorBoardHook` is the
engine hook that fills one live: ``train(config, hooks=[TensorBoardHook("runs/tb")])``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ...engine import RunResult, RunSetup
from .base import eval_scalars, flat_params
from .live import TrackerHook


class TensorBoardRun:
    """One TensorBoard run: an event file in ``log_dir`` (created on open).

    ``replace``: event files already in ``log_dir`` are deleted first (a new run of the same
    folder, as ``metrics.json`` is replaced). ``purge_step``: a resumed run hides the earlier
    events at and after this step (TensorBoard's own ``purge_step``).
    """

    def __init__(self, log_dir: str | Path, *, replace: bool = False, purge_step: int | None = None):
        from torch.utils.tensorboard import SummaryWriter

        self.log_dir = Path(log_dir)
        if replace and self.log_dir.is_dir():
            for old in self.log_dir.glob("events.out.tfevents.*"):
                old.unlink()
        self.writer = SummaryWriter(log_dir=str(self.log_dir), purge_step=purge_step, flush_secs=10)

    def scalars(self, values: Mapping[str, float], step: int) -> None:
        """Each value as a scalar series point at ``step``."""
        for tag, value in values.items():
            self.writer.add_scalar(tag, value, step)

    def text(self, tag: str, text: str, step: int = 0) -> None:
        """Markdown text under ``tag`` (TensorBoard's Text tab)."""
        self.writer.add_text(tag, text, step)

    def hparams(self, params: Mapping[str, Any], metrics: Mapping[str, float]) -> None:
        """The run's precision and config in the HParams tab, with ``metrics`` (tags logged as scalars).

        Written into this run's own folder (``SummaryWriter.add_hparams`` would make a sub-run).
        """
        from torch.utils.tensorboard.summary import hparams

        values = flat_params(params)
        exp, ssi, sei = hparams(values, dict(metrics))
        writer = self.writer._get_file_writer()
        for summary in (exp, ssi, sei):
            writer.add_summary(summary)

    def describe(self, config: Mapping[str, Any], describe: str | None, extra: str = "") -> None:
        """The proof line and the config as text."""
        if describe:
            self.text("ampkit/precision", f"    {describe}")
        body = json.dumps(dict(config), indent=2, default=str).replace("\n", "\n    ")
        self.text("ampkit/config", f"    {body}")
        if extra:
            self.text("ampkit/notes", extra)

    def close(self) -> None:
        """Flush the event file and close it."""
        self.writer.flush()
        self.writer.close()


class TensorBoardHook(TrackerHook):
    """Engine hook: one TensorBoard run in ``log_dir``, written step by step.

    Scalars ``train/*`` (loss, step time, lr, loss scale, grad norm, skipped steps, throughput),
    ``memory/*``, ``energy/joules`` where a counter is readable, ``eval/*`` and ``final/*``;
    the precision and the config as hparams and text. ``replace``: delete event files left in
    ``log_dir`` by an earlier run (``ampkit train`` does unless it resumes).
    """

    name = "tensorboard"

    def __init__(self, log_dir: str | Path, *, replace: bool = False):
        super().__init__()
        self.log_dir = Path(log_dir)
        self.replace = replace
        self.run: TensorBoardRun | None = None

    def _open(self, run: RunSetup, first_step: int) -> None:
        resumed = first_step > 1
        self.run = TensorBoardRun(
            self.log_dir, replace=self.replace and not resumed, purge_step=first_step if resumed else None
        )
        self.run.describe(self.params, run.precision.describe(run.model))

    def _write(self, scalars: dict[str, float], step: int) -> None:
        assert self.run is not None
        self.run.scalars(scalars, step)

    def _finish(self, result: RunResult) -> None:
        assert self.run is not None
        params = {**self.params, "precision": result.precision}  # after a fallback: the mode it ended in
        self.run.hparams(params, eval_scalars(result.final, "final"))
        self.run.text("ampkit/energy", f"energy: {self.sampler.energy_method}")

    def _close(self, failed: bool) -> None:
        if self.run is not None:
            self.run.close()
