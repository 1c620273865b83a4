"""The live tracker hook of ``ampkit train``: per-step scalars from the engine, fanned out to a writer.

:class:`TrackerHook` implements the engine's ``TrainHook`` protocol (``on_train_start(run)``,
``on_step_end(record, run)``, ``on_train_end(result)``); :class:`~.tensorboard.TensorBoardHook`
and :class:`~.mlflow.MLflowHook` only say how to open, write and close. A tracker that fails
to write (a full disk, a tracking server that went away) logs one warning and turns itself off:
it never stops the training it watches.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

import torch

from ...engine import RunResult, RunSetup, StepRecord, synchronize
from .base import eval_scalars, finite, step_scalars

log = logging.getLogger("ampkit")


class Sampler:
    """Memory (CUDA allocator, else process RSS) and energy (NVML/RAPL, where readable) at each step."""

    def __init__(self) -> None:
        self.device = torch.device("cpu")
        self.window: Any = None
        self.energy_method = "unavailable"

    def start(self, device: torch.device) -> None:
        """Open the device's energy counter (if it has a readable one) and start its window."""
        from ...study.energy import EnergyWindow, NoEnergyCounter, open_counter

        self.device = device
        counter = open_counter(device)
        if isinstance(counter, NoEnergyCounter):
            self.energy_method = f"unavailable: {counter.reason}"
            return
        self.window = EnergyWindow(counter, lambda: synchronize(device))
        self.window.start()
        self.energy_method = counter.method

    def sample(self) -> dict[str, float]:
        """``memory/*`` and ``energy/joules`` (since training started) now; unmeasured ones left out."""
        from ...study.meters import current_rss_bytes, peak_rss_bytes

        out: dict[str, Any] = {}
        if self.device.type == "cuda":
            out["memory/allocated_bytes"] = torch.cuda.memory_allocated(self.device)
            out["memory/max_allocated_bytes"] = torch.cuda.max_memory_allocated(self.device)
            out["memory/reserved_bytes"] = torch.cuda.memory_reserved(self.device)
        else:
            now = current_rss_bytes()
            out["memory/rss_bytes"] = now
            out["memory/peak_rss_bytes"] = max(peak_rss_bytes(), now or 0)  # ru_maxrss lags a little
        if self.window is not None:
            out["energy/joules"] = self.window.elapsed_j()
        return {k: float(v) for k, v in out.items() if finite(v) is not None}


class TrackerHook:
    """Engine hook that logs every step of a run; subclasses implement :meth:`_open`, :meth:`_write`,
    :meth:`_finish` and :meth:`_close`."""

    name = "tracker"

    def __init__(self) -> None:
        self.sampler = Sampler()
        self.active = False
        self.closed = False
        self._lr: float | None = None
        self.params: dict[str, Any] = {}
        """The run's config with its precision and learning rate (set when training starts)."""
        self._last_step = 0
        self._first_step = 1

    # -- what a writer implements --------------------------------------------------------------------
    def _open(self, run: RunSetup, first_step: int) -> None:
        raise NotImplementedError

    def _write(self, scalars: dict[str, float], step: int) -> None:
        raise NotImplementedError

    def _finish(self, result: RunResult) -> None:
        """Final metrics, hparams, artifacts (after the scalars of :meth:`on_train_end`)."""

    def _close(self, failed: bool) -> None:
        raise NotImplementedError

    # -- the engine's hook protocol ------------------------------------------------------------------
    def on_train_start(self, run: RunSetup) -> None:
        """Open the writer (nothing is written before training starts) and the meters."""
        self._lr = _lr(run)
        self._last_step = run.optimizer.steps
        config = run.config.to_dict()
        self.params = {**config, "precision": run.precision.name}
        if config.get("lr") is None:  # the task's default: the rate really used
            self.params["lr"] = self._lr
        self._first_step = run.optimizer.steps + 1  # after a resume: the step it resumes at
        self.active, self.closed = True, False  # a writer that fails to open is closed (MLflow: FAILED)
        self._guard(lambda: self._open(run, self._first_step))
        self._guard(lambda: self.sampler.start(run.precision.device))

    def on_step_end(self, record: StepRecord, run: RunSetup) -> None:
        """Loss, step time, lr, loss scale, grad norm, skipped steps so far, memory and energy."""
        if not self.active:
            return
        lr, self._lr, self._last_step = self._lr, _lr(run), record.step

        def write() -> None:
            scalars = step_scalars(
                record.loss,
                record.time_s,
                lr=lr,  # the rate this step used (a scheduler moves it after the step)
                loss_scale=record.loss_scale,
                grad_norm=record.grad_norm,
                skipped=run.optimizer.skipped_steps,
                items=record.items,
            )
            self._write({**scalars, **self.sampler.sample()}, record.step)

        self._guard(write)

    def on_train_end(self, result: RunResult) -> None:
        """Evaluations at their steps, the final evaluation and summary at the last step; then close."""
        if self.active:
            for ev in (
                e for e in result.evals if e.step >= self._first_step
            ):  # not a resumed run's earlier ones
                self._guard(lambda ev=ev: self._write(eval_scalars(ev.metrics, "eval"), ev.step))
            last = result.history[-1].step if result.history else self._last_step
            summary = {
                **eval_scalars(result.final, "final"),
                "summary/skipped_steps": float(result.skipped_steps),
            }
            median = result.median_step_time()
            if median is not None:
                summary["summary/step_time_median_s"] = median
            self._guard(lambda: self._write(summary, last))
            self._guard(lambda: self._finish(result))
        self.close(failed=False)

    def close(self, failed: bool = True) -> None:
        """Flush and close (a run that ended without :meth:`on_train_end` is marked failed)."""
        if self.closed:
            return
        if self.active:
            self._guard(lambda: self._close(failed))
        self.active, self.closed = False, True

    def _guard(self, action: Any) -> None:
        """Run a write; on failure warn once and stop tracking (training goes on)."""
        if self.closed:
            return
        try:
            action()
        except Exception as err:
            log.warning("ampkit: warning: %s: stopped logging: %s: %s", self.name, type(err).__name__, err)
            was_active, self.active, self.closed = self.active, False, True
            if was_active:
                with contextlib.suppress(Exception):  # release what the writer holds (files, threads)
                    self._close(True)


def _lr(run: RunSetup) -> float | None:
    groups = getattr(getattr(run.optimizer, "optimizer", None), "param_groups", None) or []
    return finite(groups[0].get("lr")) if groups else None
