"""What one optimizer step did: :class:`StepOutcome` and the reasons a step is not applied."""

from __future__ import annotations

import math
from dataclasses import dataclass

#: ``StepOutcome.reason`` values (None when the step was applied).
NO_GRADIENTS = "no gradients"
NONFINITE_GRADIENTS = "non-finite gradients"
SCALER_SKIPPED = "scaler skipped (inf/NaN)"
NONFINITE_WEIGHTS = "non-finite weights"


@dataclass(frozen=True)
class StepOutcome:
    """What happened at one optimizer step."""

    step: int
    """Optimizer steps attempted so far, this one included (1-based)."""
    applied: bool
    """False when the update was not applied (see :attr:`reason`); the weights are unchanged."""
    grad_norm: float | None
    """Total 2-norm of the *unscaled* gradients before clipping (None when not computed)."""
    loss_scale: float | None
    """Loss scale this step's gradients were computed with (None without a scaler)."""
    next_loss_scale: float | None
    """Loss scale after the scaler's update (halved after a skipped step)."""
    reason: str | None = None
    """Why the step was not applied: ``"no gradients"``, ``"non-finite gradients"`` (modes without a
    scaler, ``skip_nonfinite``), ``"scaler skipped (inf/NaN)"`` or ``"non-finite weights"`` (either skip, when
    the weights themselves already hold inf/NaN: an earlier applied update wrote them); None when applied."""

    @property
    def skipped(self) -> bool:
        """The opposite of :attr:`applied`."""
        return not self.applied


def is_finite(value: float | None) -> bool:
    """True for a finite float; None counts as finite (nothing was measured)."""
    return value is None or math.isfinite(value)
