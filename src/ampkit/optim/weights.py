"""Tell a skip caused by inf/NaN already in the weights from one caused by this step's gradients.

An applied update can write inf/NaN into the weights (a float16 weight pushed past 65504, an
Adam ``eps`` that is 0 in float16); from then on every forward is NaN and every step is skipped.
Checking the weights right after each update would cost a host sync per step, so the weights are
checked only on a step that is skipped for non-finite gradients, which has synced already: such
a step reports ``"non-finite weights"`` and warns once, naming the applied step that wrote them.
The step that wrote them was reported ``applied=True``: its gradients were finite.
"""

from __future__ import annotations

import torch

from ..precision import PrecisionWarning
from ..warn import warn
from .finite import exactly_finite
from .outcome import NONFINITE_WEIGHTS


class WeightWatch:
    """Remembers the last applied step; names it when later skips find non-finite weights."""

    def __init__(self) -> None:
        self.last_applied = 0
        self.warned = False

    def reason(self, params: list[torch.Tensor], step: int, mode: str, default: str) -> str:
        """``default`` when the weights are finite, else :data:`NONFINITE_WEIGHTS` (warned once)."""
        data = [p.detach() for p in params]
        if not data or exactly_finite(data):
            return default
        if not self.warned:
            self.warned = True
            bad = sum(1 for t in data if not bool(torch.isfinite(t).all()))
            origin = (
                f"written by step {self.last_applied}, the last applied one"
                if self.last_applied
                else "before any applied step"
            )
            warn(
                f"{mode}: step {step} skipped: {bad} of {len(data)} parameter tensors hold inf/NaN "
                f"({origin}), so no later step can be applied; causes: an update past the weights' "
                "range (float16 max 65504), Adam eps below 1e-4 with float16 weights, a too-high lr",
                PrecisionWarning,
            )
        return NONFINITE_WEIGHTS
