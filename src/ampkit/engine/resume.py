"""``--resume``: read ``out/last.pt`` once, check it against the flags, then continue from it.

A checkpoint continues only the run it came from: a different task, size, seed, batch size or
accumulation, or fewer steps than it already ran, would mix two configurations in one history,
so it is refused before anything is built or written, in one line naming the fields. With
``resume_any`` the checkpoint's own values are taken instead (more ``--steps`` still extend the
run). A different precision is allowed: it starts a new segment of the run's history.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..errors import UsageError
from ..tasks.registry import trusted_task
from .checkpoint import load_checkpoint
from .config import TrainConfig
from .config_check import ConfigError, check_field
from .runfolder import CHECKPOINT_NAME, claim_run_folder

log = logging.getLogger("ampkit")

#: Config fields a resumed run must share with its checkpoint.
COMPARED = ("task", "size", "seed", "batch_size", "accumulate")
ADVICE = "use the checkpoint's flags or --resume-any to continue with the checkpoint's config"


def checkpoint_path(config: TrainConfig) -> Path | None:
    """``out/last.pt`` of a run that asks to resume, else None."""
    if not (config.resume or config.resume_any) or config.out is None:
        return None
    return Path(config.out) / CHECKPOINT_NAME


def asked_steps(config: TrainConfig) -> int | None:
    """Steps ``config`` asks for, when known before the task is built (not for ``epochs``)."""
    if config.steps is not None:
        return config.steps
    return config.total_steps(0) if config.epochs is None else None


def _pairs(values: dict[str, Any]) -> str:
    return ", ".join(f"{name}={value}" for name, value in values.items())


def conflict(path: Path, step: int, theirs: dict[str, Any], ours: dict[str, Any], total: int | None) -> str:
    """The one-line refusal: what the checkpoint was trained with, what the flags say."""
    short = total is not None and total < step
    if short:
        ours = {**ours, "steps": total}
    if not theirs:
        return (
            f"--resume: {path} is already at step {step}; these flags say steps={total}; "
            f"use --steps {step} or more, or --resume-any to continue with the checkpoint's config"
        )
    at = f" (already at step {step})" if short else ""
    return f"--resume: {path} was trained with {_pairs(theirs)}{at}; these flags say {_pairs(ours)}; {ADVICE}"


def check_steps(path: Path, step: int, total: int) -> None:
    """Refuse a run that asks for fewer steps than the checkpoint already ran."""
    if total < step:
        raise UsageError(conflict(path, step, {}, {}, total))


def reconcile(config: TrainConfig, state: dict[str, Any], path: Path) -> TrainConfig:
    """``config`` if ``state`` can continue it; with ``resume_any`` the checkpoint's config; else refused."""
    saved, step = state["config"], int(state["step"])
    theirs = {n: saved[n] for n in COMPARED if n in saved and saved[n] != getattr(config, n)}
    ours = {n: getattr(config, n) for n in theirs}
    total = asked_steps(config)
    short = total is not None and total < step
    if not theirs and not short:
        return config
    if not config.resume_any:
        raise UsageError(conflict(path, step, theirs, ours, total))
    taken = dict(theirs)
    if "task" in taken:  # the checkpoint's task replaces the flags' one: only a built-in task, never its code
        trusted_task(taken["task"], f"--resume-any: {path}")
    if short:  # the flags' steps end before the checkpoint: keep the checkpoint's own length
        taken.update(steps=saved.get("steps"), epochs=saved.get("epochs"))
    for name, value in taken.items():  # what comes from the file is checked as a flag would be
        try:
            check_field(name, value)
        except ConfigError as err:
            raise UsageError(f"--resume-any: {path}: config.{err}") from None
    shown = {name: value for name, value in taken.items() if value is not None}
    log.info("ampkit: --resume-any: continuing with the checkpoint's %s", _pairs(shown))
    return dataclasses.replace(config, **taken)


def plan_resume(config: TrainConfig) -> tuple[TrainConfig, dict[str, Any] | None]:
    """``(config to run, checkpoint state or None)``; reads and checks ``out/last.pt`` when resuming.

    Without a checkpoint the run starts fresh (one log line says so). A damaged, foreign or unsafe
    file and a conflicting config raise :class:`UsageError`. Nothing is written.
    """
    path = checkpoint_path(config)
    if path is None:
        return config, None
    if not path.exists() and not path.is_symlink():
        log.info("ampkit: no checkpoint in %s: starting fresh", config.out)
        return config, None
    state = load_checkpoint(path)
    return reconcile(config, state, path), state


@contextlib.contextmanager
def held_for_launch(config: TrainConfig) -> Iterator[TrainConfig]:
    """The launcher parent's share of a multi-process run: hold the run folder for the whole job
    (its workers see their parent as the holder), check the resume once before any rank starts,
    and yield the config the workers get (not resuming when there is no checkpoint)."""
    with claim_run_folder(config.out):
        config, state = plan_resume(config)
        if state is None and (config.resume or config.resume_any):
            config = dataclasses.replace(config, resume=False, resume_any=False)
        yield config
