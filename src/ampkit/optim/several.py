"""Several optimizers behind one :class:`PrecisionOptimizer`: their schedules, rebinding and state.

One loss, two optimizers (AdamW for the body, SGD or Muon for the head) is torch's
"one GradScaler, several optimizers" recipe: one scaled backward, ``scaler.step`` per optimizer,
one ``scaler.update()``. ``PrecisionOptimizer([opt_a, opt_b], prec)`` runs it with one skip
decision for all. ``scheduler`` may then be a list (one per optimizer, or any number); the state
holds one entry per optimizer / scheduler, and a single optimizer keeps the plain layout.
"""

from __future__ import annotations

from typing import Any

import torch

from ..errors import UsageError
from .rebind import carry_schedule, repoint_scheduler

Pair = tuple[torch.optim.Optimizer, torch.optim.Optimizer]


def as_schedulers(value: Any) -> list[Any]:
    """``scheduler=`` as a list: none, one, or the schedulers of a list/tuple."""
    if value is None:
        return []
    return list(value) if isinstance(value, list | tuple) else [value]


def repoint_schedules(schedulers: list[Any], pairs: list[Pair], single: bool) -> None:
    """Point each scheduler of a rebuilt optimizer at its replacement, continuing its groups' schedule.

    With one optimizer the scheduler belongs to it; with several, a scheduler follows the optimizer
    it points at (``scheduler.optimizer``) and the others are left alone."""
    for scheduler in schedulers:
        for old, new in pairs:
            if single or getattr(scheduler, "optimizer", None) is old:
                repoint_scheduler(scheduler, new, carry_schedule(old, new))


def state_of(value: Any) -> Any:
    """``state_dict()`` of one optimizer/scheduler, of each in a list, or None for None."""
    if isinstance(value, list | tuple):
        return [item.state_dict() for item in value]
    return None if value is None else value.state_dict()


def load_into(value: Any, state: Any, what: str) -> None:
    """Load what :func:`state_of` saved into ``value`` (as many, in the same order)."""
    items = value if isinstance(value, list | tuple) else [value]
    states = state if isinstance(state, list) else [state]
    if len(states) != len(items):
        raise UsageError(
            f"PrecisionOptimizer.load_state_dict: {len(states)} {what} state(s) for {len(items)} {what}(s); "
            f"valid: a state saved by a wrapper of as many {what}s"
        )
    for item, one in zip(items, states):
        item.load_state_dict(one)
