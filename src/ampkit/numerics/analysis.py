"""``analyze``: fp16 range analysis and drift A/B in one pass (the API behind ``ampkit analyze``).

One fp32 run with :class:`~.ranges.RangeRecorder` hooks and one run in the chosen mode are
built from the same config and stepped in lockstep: the fp32 run's ranges give the fp16
verdict and loss scale (:func:`~.advice.advise`), the pair gives the drift per step, and the
mode's FLOP share shows how much of its math actually ran in low precision.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..precision import canonical_mode
from .advice import RangeAdvice, advise
from .drift import DriftStep, lockstep
from .ranges import RangeRecorder
from .telemetry import low_precision_flop_share


@dataclass
class AnalysisReport:
    """What ``analyze`` found."""

    task: str
    mode: str
    """The mode compared against fp32 in the drift A/B."""
    steps: int
    device: str
    advice: RangeAdvice
    """fp16 verdicts per layer and the recommendation, from the fp32 run's ranges."""
    drift: list[DriftStep]
    flop_share: dict[str, Any]
    """:func:`~.telemetry.low_precision_flop_share` of the mode's run."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (``ampkit analyze --json``)."""
        return {
            "task": self.task,
            "mode": self.mode,
            "steps": self.steps,
            "device": self.device,
            "ranges": self.advice.to_dict(),
            "drift": [d.to_dict() for d in self.drift],
            "flop_share": self.flop_share,
        }


def analyze(
    config: Any,
    steps: int = 20,
    mode: str | None = None,
    *,
    on_step: Callable[[DriftStep], None] | None = None,
) -> AnalysisReport:
    """Run ``steps`` steps of ``config``'s task in fp32 (ranges recorded) and in ``mode`` (default:
    ``config.precision``) from the same start; ``config`` is a :class:`~ampkit.engine.TrainConfig`."""
    from ..engine.setup import build_run, check_batch_size

    mode = canonical_mode(mode or config.precision)
    reference = build_run(dataclasses.replace(config, precision="fp32", keep_fp32=None, compile=False))
    check_batch_size(config.batch_size, reference.task, config.size)  # as train refuses it, before a step
    arm = build_run(dataclasses.replace(config, precision=mode))
    arm.optimizer.skip_nonfinite = True  # as ``train`` does: no NaN updates in the drift figures
    share = low_precision_flop_share(arm)
    with RangeRecorder(reference.model) as recorder:
        drift = lockstep(reference, arm, steps, on_step=on_step)
    return AnalysisReport(
        task=arm.task.name,
        mode=mode,
        steps=steps,
        device=str(arm.precision.device),
        advice=advise(recorder.summary()),
        drift=drift,
        flop_share=share,
    )
