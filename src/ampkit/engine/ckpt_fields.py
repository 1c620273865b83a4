"""The values inside an ampkit checkpoint, checked before a run resumes from it or evaluates it.

A checkpoint is the user's file and may have been edited by hand: its ``config`` (every
:class:`~.config.TrainConfig` field, :mod:`.config_check`), its ``step``, ``precision`` and
``keep_fp32``, the optimizer's hyperparameters (``lr``, ``betas``, ...), the loss scaler's state
and every rank's RNG state (``rng_ranks``, :mod:`.ckpt_state`) are checked for type and range
here, so that a bad value is one line ``<file>: <field> is <value>; valid: ...`` before
anything is built, never a traceback (or a silently wrong run) steps later.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import UsageError
from .ckpt_state import Problem, rng_ranks_problem, scaler_problem
from .config import TrainConfig
from .config_check import MAX_STEPS, ConfigError, check_field, is_number, shown

#: Optimizer hyperparameters a checkpoint's param groups may hold, and what is valid for each.
_HYPER = {
    "lr": "a finite number >= 0",
    "weight_decay": "a finite number >= 0",
    "eps": "a finite number >= 0",
}


def _bad(path: Path, field: str, value: Any, valid: str) -> UsageError:
    return UsageError(f"{path}: {field} is {shown(value)}; valid: {valid}")


def check_config(state: dict[str, Any], path: Path) -> TrainConfig:
    """The checkpoint's ``config`` as a :class:`TrainConfig`, each field checked; else one line."""
    try:
        config = TrainConfig.from_dict(state["config"])
    except ConfigError as err:
        raise UsageError(f"{path}: config.{err}") from None
    except (TypeError, ValueError) as err:
        raise UsageError(f"{path}: damaged checkpoint: its config does not load ({err})") from None
    sizes = ("default", "small") if config.task == "ct" else ("default", "small", "gpu")
    if config.size not in sizes:  # a hand-edited size would fail in the task's factory
        raise _bad(path, "config.size", config.size, f"{', '.join(sizes)} (task {config.task})")
    return config


def _check_groups(optimizer: Any, path: Path) -> None:
    """``lr``, ``weight_decay``, ``eps`` and ``betas`` of every param group (where the layout has them)."""
    inner = optimizer.get("optimizer") if isinstance(optimizer, dict) else None
    groups = inner.get("param_groups") if isinstance(inner, dict) else None
    if not isinstance(groups, list):
        return  # another layout: loading the state refuses it, naming the file
    for i, group in enumerate(groups):
        if not isinstance(group, dict):
            raise _bad(path, f"optimizer param_groups[{i}]", group, "a dict of hyperparameters")
        where = f"optimizer param_groups[{i}]"
        for key, valid in _HYPER.items():
            if key in group and not (is_number(group[key]) and group[key] >= 0):
                raise _bad(path, f"{where}.{key}", group[key], valid)
        betas = group.get("betas")
        if betas is not None and not (
            isinstance(betas, list | tuple)
            and len(betas) == 2
            and all(is_number(b) and 0 <= b < 1 for b in betas)
        ):
            raise _bad(path, f"{where}.betas", betas, "two finite numbers in [0, 1)")


def check_fields(state: dict[str, Any], path: Path) -> TrainConfig:
    """Every value :func:`~.checkpoint.check_checkpoint` does not check by type alone; returns the config."""
    from ..precision import MODES

    config = check_config(state, path)
    step = state["step"]
    if not 0 <= step <= MAX_STEPS:
        raise _bad(path, "step", step, f"a whole number in 0..{MAX_STEPS:_}")
    if state["precision"] not in MODES:
        raise _bad(path, "precision", state["precision"], ", ".join(MODES))
    try:
        check_field("keep_fp32", state.get("keep_fp32"))
    except ConfigError as err:
        raise UsageError(f"{path}: {err}") from None
    _check_groups(state["optimizer"], path)
    _check_state(state, path)
    return config


def _check_state(state: dict[str, Any], path: Path) -> None:
    """The loss scaler's state (top level and the optimizer's copy) and ``rng_ranks``."""
    inner = state["optimizer"].get("scaler")
    found: list[Problem | None] = [
        scaler_problem(state.get("scaler"), "scaler"),
        scaler_problem(inner, "optimizer.scaler"),
        rng_ranks_problem(state.get("rng_ranks")),
    ]
    for problem in found:
        if problem is not None:
            field, said, valid = problem
            raise UsageError(f"{path}: {field} is {said}; valid: {valid}")
