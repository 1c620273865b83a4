"""Where :class:`PrecisionOptimizer` reads or edits ``GradScaler``'s per-optimizer record.

``torch.amp.GradScaler`` remembers, per optimizer (keyed by ``id``), whether its gradients
were already unscaled this step and the inf checks that produced. ``PrecisionOptimizer``
needs that record to accept a hand-written ``opt.scaler.unscale_(opt.optimizer)``, to end a
step in which no parameter has a gradient, to carry an unscale over to a rebuilt optimizer,
and to make several optimizers behind one scaler skip together. The record
(``_per_optimizer_states``) has had this shape since torch 1.6; when it is missing these
helpers report "nothing recorded" and the callers take the plain path.
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


def share_inf_checks(
    scaler: torch.amp.GradScaler,
    optimizers: list[torch.optim.Optimizer],
    stepping: list[torch.optim.Optimizer],
) -> None:
    """One skip decision for several optimizers behind one scaler, all unscaled already: the records of
    ``stepping`` get the sum of all their inf checks (on the device, no sync), so ``scaler.step`` skips
    all or none; the others (no gradient: not stepped) lose theirs.

    torch's multi-optimizer recipe lets each optimizer decide alone (one may step while another
    skips); while every gradient is finite both step the same."""
    states = getattr(scaler, "_per_optimizer_states", None)
    for optimizer in optimizers:
        if isinstance(states, dict) and not any(optimizer is o for o in stepping):
            states.pop(id(optimizer), None)
    records = [r for r in (_record(scaler, o) for o in stepping) if r is not None]
    checks = [t for r in records for t in r["found_inf_per_device"].values()]
    if len(records) < 2 or not checks:
        return
    device = checks[0].device
    total = torch.stack([t.to(device) for t in checks]).sum()
    for record in records:
        record["found_inf_per_device"] = {device: total}
