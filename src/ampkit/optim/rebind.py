"""Carry a learning-rate schedule over to a rebuilt optimizer (densification, pruning).

When a training script rebuilds its ``torch.optim`` optimizer because the parameters changed
(Gaussian splatting clones and prunes points), the scheduler still points at the old one.
:func:`carry_schedule` matches the new param groups to the old ones — by ``"name"`` where
every group has one, else by position — and gives each matched group the old group's
scheduled ``lr`` and the scheduler's per-group keys (``initial_lr``, OneCycleLR's
``max_lr``...); :func:`repoint_scheduler` then points the scheduler (and the schedulers inside
``SequentialLR`` / ``ChainedScheduler``) at the new optimizer with its per-group lists
(``base_lrs``, ``_last_lr``, ``min_lrs``) in the new group order. ``last_epoch`` is kept.
"""

from __future__ import annotations

import functools
import weakref
from collections.abc import Sequence
from typing import Any

import torch

Groups = Sequence[dict[str, Any]]

#: Per-group lists a scheduler keeps, and what a new, unmatched group gets.
_PER_GROUP_LISTS: dict[str, str] = {"base_lrs": "initial_lr", "_last_lr": "lr", "min_lrs": "", "max_lrs": ""}


def match_groups(old: Groups, new: Groups) -> list[int | None]:
    """For each new group, the index of the old group it continues (None for a new one)."""
    if old and new and all("name" in g for g in (*old, *new)):
        where = {g["name"]: i for i, g in enumerate(old)}
        return [where.get(g["name"]) for g in new]
    return [i if i < len(old) else None for i in range(len(new))]


def carry_schedule(old: torch.optim.Optimizer, new: torch.optim.Optimizer) -> list[int | None]:
    """Give ``new``'s groups the schedule state of the matching ``old`` groups; returns the match."""
    match = match_groups(old.param_groups, new.param_groups)
    for group, j in zip(new.param_groups, match):
        if j is not None:
            before = old.param_groups[j]
            group["lr"] = before["lr"]  # the scheduled value, not the rebuilt optimizer's initial one
            for key, value in before.items():
                if key != "params" and key not in group:
                    group[key] = value
        group.setdefault("initial_lr", group["lr"])
    return match


def track_step_called(optimizer: torch.optim.Optimizer) -> None:
    """Wrap ``optimizer.step`` as torch's LRScheduler does (it warns when the scheduler steps first): for
    an optimizer a schedule is carried over to, or a wrapper unpickled with a scheduler built on it."""
    step = optimizer.step
    if hasattr(step, "_wrapped_by_lr_sched") or not hasattr(step, "__func__"):
        return
    func, ref = step.__func__, weakref.ref(optimizer)  # type: ignore[attr-defined]

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        opt = ref()
        opt._opt_called = True  # type: ignore[union-attr]
        return func.__get__(opt, type(opt))(*args, **kwargs)

    wrapper._wrapped_by_lr_sched = True  # type: ignore[attr-defined]
    optimizer.step = wrapper  # type: ignore[method-assign]


def repoint_scheduler(scheduler: Any, new: torch.optim.Optimizer, match: list[int | None]) -> None:
    """Point ``scheduler`` (and any it chains) at ``new``, its per-group lists re-ordered by ``match``."""
    for inner in getattr(scheduler, "_schedulers", None) or ():
        repoint_scheduler(inner, new, match)
    if not hasattr(scheduler, "optimizer"):
        return
    for attr, group_key in _PER_GROUP_LISTS.items():
        values = getattr(scheduler, attr, None)
        if not isinstance(values, list) or not values:
            continue
        fresh = []
        for group, j in zip(new.param_groups, match):
            if j is not None and j < len(values):
                fresh.append(values[j])
            else:
                fresh.append(group.get(group_key, values[0]) if group_key else values[0])
        setattr(scheduler, attr, fresh)
    scheduler.optimizer = new
    track_step_called(new)
