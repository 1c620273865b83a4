"""The training loop that composes precision, optimizer wrapper, task, checkpoints and records."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import torch

from ..errors import UsageError
from ..numerics.fallback import NumericsGuard, resume_precision
from ..numerics.telemetry import low_precision_flop_share
from ..precision import Precision
from .checkpoint import capture_rng, save_atomic
from .compile_clock import CompileClock
from .config import TrainConfig
from .dist_state import gather_rng, load_state_dicts, restore_rank_rng, state_dicts
from .distributed import session, world_from_env
from .evaluate import evaluate, task_loss
from .progress import StepProgress
from .records import EvalRecord, RunResult, StepRecord
from .resume import check_steps, plan_resume
from .runfolder import CHECKPOINT_NAME, METRICS_NAME, claim_run_folder, write_json
from .setup import RunSetup, build_run, check_batch_size

log = logging.getLogger("ampkit")

__all__ = ["CHECKPOINT_NAME", "METRICS_NAME", "TrainHook", "run_step", "synchronize", "train"]


class TrainHook(Protocol):
    """Called after every optimizer step (the study uses it to start meters after warm-up).

    A hook may also define ``on_train_start(run)``: called once, right before the first step
    (after setup, resume and the precision scope), so meters can start exactly at training;
    and ``on_train_end(result)``: called once after the final evaluation and ``metrics.json``
    (trackers log the final metrics and close there).
    """

    def on_step_end(self, record: StepRecord, run: RunSetup) -> None: ...


def synchronize(device: torch.device) -> None:
    """Wait for queued device work so a host clock reads true times (no-op on CPU)."""
    if device.type != "cpu":
        torch.accelerator.synchronize(device)


def run_step(run: RunSetup, step: int) -> tuple[torch.Tensor, Any]:
    """Forward, fp32 loss, scaled backward for each micro-batch, then the optimizer step."""
    precision, opt, task, model = run.precision, run.optimizer, run.task, run.model
    losses = []
    for micro in range(opt.accumulate):
        inputs, targets = run.dist.local_batch(task.train_batch(step * opt.accumulate + micro))
        with run.dist.sync_context(model, opt, last=micro + 1 == opt.accumulate):
            with precision.autocast():
                outputs = model(precision.cast_inputs(inputs))
            loss = task_loss(task, outputs, targets)
            opt.backward(loss)
        losses.append(loss.detach())
    return run.dist.mean(torch.stack(losses).mean()), opt.step()


def _checkpoint(run: RunSetup, result: RunResult, step: int) -> dict[str, Any]:
    model_state, opt_state = state_dicts(run.dist, run.model, run.optimizer)
    return {
        "model": model_state,
        "optimizer": opt_state,
        "scaler": opt_state["scaler"],
        "precision": run.precision.name,
        "keep_fp32": run.precision.keep_fp32.spec(),
        "task": run.config.task,
        "step": step,
        "rng": capture_rng(),
        "config": run.config.to_dict(),
        "result": result.to_dict(),
        "rng_ranks": gather_rng(run.dist),
    }


def _save_checkpoint(run: RunSetup, result: RunResult, step: int, path: Path) -> None:
    """Every rank takes part in gathering the state; rank 0 writes it."""
    state = _checkpoint(run, result, step)
    if run.dist.is_main:
        save_atomic(state, path)


def _resume(run: RunSetup, state: dict[str, Any], path: Path) -> tuple[int, RunResult]:
    """Load ``state`` (read and checked by :func:`~.resume.plan_resume`) into ``run``."""
    start = int(state["step"])
    check_steps(path, start, run.total_steps)  # --epochs: known only now that the task is built
    try:
        result = RunResult.from_dict(state["result"])
    except (TypeError, KeyError, ValueError) as err:
        raise UsageError(f"{path}: damaged checkpoint: its result does not load ({err})") from None
    resume_precision(run, state)  # a run that fell back resumes in the fallen-back mode
    try:
        load_state_dicts(run.dist, run.model, run.optimizer, state["model"], state["optimizer"])
        restore_rank_rng(run.dist, state)
    except (RuntimeError, KeyError, TypeError, ValueError, IndexError) as err:
        detail = " ".join(str(err).split())[:200] or type(err).__name__
        raise UsageError(
            f"{path}: damaged checkpoint: its state does not load into this run ({detail})"
        ) from None
    if state["precision"] != run.precision.name:
        log.warning("ampkit: resuming a %s checkpoint under %s", state["precision"], run.precision.name)
    # the history continues; what the run is now (config, precision, FLOP share) is this run's
    result.config = run.config.to_dict()
    result.enter_segment(run.precision.name, start + 1)
    if result.precision != run.precision.name:
        result.precision = run.precision.name
        if run.config.flop_share:
            result.numerics["flop_share"] = low_precision_flop_share(run)
    result.describe = run.precision.describe(run.model)
    return start, result


def train(
    config: TrainConfig, *, hooks: Sequence[TrainHook] = (), precision: Precision | None = None
) -> RunResult:
    """Train ``config.task`` under ``config.precision``; returns (and writes) the measurements.

    Under a launcher's environment (``ampkit train --nproc N``, torchrun) this process trains as
    one rank of ``config.strategy``; rank 0 logs and writes metrics and checkpoints. A run folder
    is held by one run at a time (:mod:`~.runlock`); ``config.resume`` checks ``out/last.pt``
    against the config before anything is built (:mod:`~.resume`).
    """
    main = world_from_env()[0] == 0
    with (
        claim_run_folder(config.out, main=main),
        session(config.nproc, config.strategy, config.device) as dist,
    ):
        config, state = plan_resume(config)
        run = build_run(config, precision, dist)
        check_batch_size(config.batch_size, run.task, config.size)  # before the first step
        return _train(config, hooks, run, state)


def _train(
    config: TrainConfig, hooks: Sequence[TrainHook], run: RunSetup, state: dict[str, Any] | None = None
) -> RunResult:
    out = Path(config.out) if config.out is not None else None
    ckpt = out / CHECKPOINT_NAME if out else None
    result = RunResult(
        task=run.task.name,
        precision=run.precision.name,
        describe=run.precision.describe(run.model),
        metric_name=run.task.metric_name,
        higher_is_better=run.task.higher_is_better,
        item_unit=run.task.item_unit,
        config=config.to_dict(),
        threads=torch.get_num_threads(),
    )
    result.enter_segment(run.precision.name, 1)
    start = 0
    if state is not None and ckpt is not None:
        start, result = _resume(run, state, ckpt)
        result.resumed_from = start
        log.info("ampkit: resumed from %s at step %d", ckpt, start)
    log.info(result.describe)
    guard = NumericsGuard(run, result)  # non-finite policy, anomaly hooks, telemetry
    items = config.batch_size * config.accumulate * run.task.items_per_sample
    device = run.precision.device
    label = f"{run.task.name} {run.precision.name}"
    with (
        run.precision.scope(),
        StepProgress(
            run.total_steps, label, enabled=config.progress and run.dist.is_main, completed=start
        ) as bar,
    ):
        run.model.train()
        for hook in hooks:
            start_hook = getattr(hook, "on_train_start", None)  # optional: older hooks lack it
            if start_hook is not None:
                start_hook(run)
        clock = CompileClock(run.model) if config.compile else None  # compile time apart from step time
        for step in range(start, run.total_steps):
            if clock is not None:
                clock.before_step()
            began = time.perf_counter()
            loss, outcome = run_step(run, step)
            synchronize(device)
            elapsed = time.perf_counter() - began
            if clock is not None:
                clock.after_step(step + 1, elapsed)
            record = StepRecord(
                step + 1, float(loss), outcome.applied, outcome.loss_scale, outcome.grad_norm, elapsed, items
            )
            result.add_step(record)
            guard.after_step(record, run, result)
            result.enter_segment(run.precision.name, record.step + 1)  # after a fallback: the new mode
            for hook in hooks:
                hook.on_step_end(record, run)
            bar.advance(record.loss)
            if config.eval_every and (step + 1) % config.eval_every == 0:
                spent = sum(r.time_s for r in result.history)
                result.evals.append(EvalRecord(step + 1, spent, evaluate(run.model, run.task, run.precision)))
            if ckpt is not None and config.checkpoint_every and (step + 1) % config.checkpoint_every == 0:
                _save_checkpoint(run, result, step + 1, ckpt)
    guard.finish(result)
    result.final = evaluate(run.model, run.task, run.precision)
    if clock is not None:
        result.compile = clock.to_dict()
    if out is not None:
        _save_checkpoint(run, result, run.total_steps, ckpt)  # type: ignore[arg-type]
        if run.dist.is_main:
            write_json(out / METRICS_NAME, result.to_dict())
    for hook in hooks:
        end_hook = getattr(hook, "on_train_end", None)  # optional, like on_train_start
        if end_hook is not None:
            end_hook(result)
    return result
