"""The three places where :class:`PrecisionOptimizer` reads ``GradScaler``'s per-optimizer record.

``torch.amp.GradScaler`` remembers, per optimizer (keyed by ``id``), whether its gradients
were already unscaled this step and the inf checks that produced. ``PrecisionOptimizer``
needs that record to accept a hand-written ``opt.scaler.unscale_(opt.optimizer)``, to end a
step in which no parameter has a gradient, and to carry an unscale over to a rebuilt
optimizer. The record (``_per_optimizer_states``) has had this shape since torch 1.6; when it
is missing these helpers report "nothing recorded" and the callers take the plain path.
"""

from __future__ import annotations

from typing import Any

import torch


def _record(scaler: torch.amp.GradScaler, optimizer: torch.optim.Optimizer) -> dict[str, Any] | None:
    states = getattr(scaler, "_per_optimizer_states", None)
    if not isinstance(states, dict):
        return None
    state = states.get(id(optimizer))  # .get: the defaultdict must not grow an entry here
    return state if isinstance(state, dict) else None


def already_unscaled(scaler: torch.amp.GradScaler, optimizer: torch.optim.Optimizer) -> bool:
    """True when ``scaler.unscale_(optimizer)`` ran since the scaler's last ``update()``."""
    state = _record(scaler, optimizer)
    return state is not None and getattr(state.get("stage"), "name", None) == "UNSCALED"


def settle(scaler: torch.amp.GradScaler, optimizer: torch.optim.Optimizer) -> None:
    """End a step that will not call ``scaler.step(optimizer)``: an unscale that recorded inf checks
    updates the scale from them (as a skipped or applied step would); any other record is dropped,
    so the next step can unscale again."""
    state = _record(scaler, optimizer)
    if state is None:
        return
    if state.get("found_inf_per_device"):
        scaler.update()
    else:
        scaler._per_optimizer_states.pop(id(optimizer), None)


def move(scaler: torch.amp.GradScaler, old: torch.optim.Optimizer, new: torch.optim.Optimizer) -> bool:
    """Hand ``old``'s record (an unscale done this step) to ``new``; False when there is none to move."""
    state = _record(scaler, old)
    if state is None:
        return False
    scaler._per_optimizer_states[id(new)] = scaler._per_optimizer_states.pop(id(old))
    return True
