"""Drift A/B: the same steps in fp32 and in a chosen mode, from the same start, side by side.

Both runs are built from one config (same seed: same initial weights, same batches) and
stepped in lockstep, so after every step the loss difference and the relative L2 distance
of the weights, ``||w_mode - w_fp32|| / ||w_fp32||`` over all parameters, show what the mode
costs before anyone commits to a long run.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from ..engine.setup import RunSetup


@dataclass(frozen=True)
class DriftStep:
    """One step of the A/B."""

    step: int
    loss_fp32: float
    loss_mode: float
    weight_drift: float
    """Relative L2 distance of all parameters from the fp32 run's after this step."""
    applied: bool
    """Whether the mode's step was applied (False: its scaler or the non-finite guard skipped it)."""

    @property
    def loss_delta(self) -> float:
        """``loss_mode - loss_fp32``."""
        return self.loss_mode - self.loss_fp32

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, with :attr:`loss_delta`."""
        return {**dataclasses.asdict(self), "loss_delta": self.loss_delta}


def weight_drift(reference: torch.nn.Module, other: torch.nn.Module) -> float:
    """Relative L2 distance between two models' parameters (same architecture), in fp32."""
    diff = ref = 0.0
    with torch.no_grad():
        for a, b in zip(reference.parameters(), other.parameters(), strict=True):
            a32 = a.detach().float()
            diff += float((b.detach().float().to(a32.device) - a32).pow(2).sum())
            ref += float(a32.pow(2).sum())
    return (diff / ref) ** 0.5 if ref else 0.0


def lockstep(
    reference: RunSetup,
    arm: RunSetup,
    steps: int,
    *,
    on_step: Callable[[DriftStep], None] | None = None,
) -> list[DriftStep]:
    """Step both runs ``steps`` times, each under its own precision scope; one :class:`DriftStep` each."""
    from ..engine.loop import run_step

    reference.model.train()
    arm.model.train()
    out = []
    for step in range(steps):
        with reference.precision.scope():
            ref_loss, _ = run_step(reference, step)
        with arm.precision.scope():
            arm_loss, outcome = run_step(arm, step)
        record = DriftStep(
            step + 1,
            float(ref_loss),
            float(arm_loss),
            weight_drift(reference.model, arm.model),
            outcome.applied,
        )
        out.append(record)
        if on_step is not None:
            on_step(record)
    return out
