"""What a run records: one :class:`StepRecord` per optimizer step, evaluations, and the result."""

from __future__ import annotations

import dataclasses
import statistics
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class StepRecord:
    """One optimizer step as measured by the engine."""

    step: int
    """1-based optimizer step."""
    loss: float
    """Mean training loss over the step's micro-batches (fp32)."""
    applied: bool
    """False when the GradScaler skipped the update (inf/NaN gradients)."""
    loss_scale: float | None
    """Loss scale used for the step (None without a scaler)."""
    grad_norm: float | None
    """Unscaled gradient 2-norm before clipping."""
    time_s: float
    """Wall time of the whole step (forward, backward, step), device-synchronised."""
    items: int
    """Samples or tokens processed in the step."""


@dataclass(frozen=True)
class EvalRecord:
    """One evaluation on the held-out set."""

    step: int
    """Optimizer steps done when it ran."""
    elapsed_s: float
    """Training wall time (sum of step times) up to this evaluation."""
    metrics: dict[str, float]
    """``loss`` and the task's metric."""


@dataclass
class RunResult:
    """Everything a run measured; written to ``metrics.json``."""

    task: str
    precision: str
    describe: str
    metric_name: str
    higher_is_better: bool
    item_unit: str
    config: dict[str, Any]
    history: list[StepRecord] = field(default_factory=list)
    evals: list[EvalRecord] = field(default_factory=list)
    final: dict[str, float] = field(default_factory=dict)
    threads: int = 1
    resumed_from: int | None = None
    nonfinite: list[dict[str, Any]] = field(default_factory=list)
    """Non-finite steps (``ampkit.numerics.NonFiniteEvent`` dicts: step, mode, where, module, kind)."""
    fallbacks: list[dict[str, Any]] = field(default_factory=list)
    """Precision switches of ``--on-nonfinite fallback``: ``{step, from, to, reason}``."""
    numerics: dict[str, Any] = field(default_factory=dict)
    """Telemetry: ``flop_share`` (``low_precision_flop_share``), skipped-step rate, loss scales, grad norms."""
    compile: dict[str, Any] | None = None
    """With ``--compile``: backend, status (``compiled``/``eager``), reason, and the compile time
    (``compile_s``, dynamo's timers) of the steps that compiled, apart from their step times."""
    segments: list[dict[str, Any]] = field(default_factory=list)
    """Steps run per precision, in order: ``{precision, from_step, to_step, steps}`` (1-based,
    inclusive; ``steps`` 0 when the run ended right after switching). A resume under another
    precision or a fallback starts a new segment."""

    @property
    def skipped_steps(self) -> int:
        """Steps the GradScaler skipped."""
        return sum(not r.applied for r in self.history)

    @property
    def final_loss_scale(self) -> float | None:
        """Loss scale after the last step."""
        return self.history[-1].loss_scale if self.history else None

    def enter_segment(self, precision: str, from_step: int) -> None:
        """Steps from ``from_step`` on run in ``precision`` (no-op when the current segment already does).

        A segment that ran no step is replaced rather than kept.
        """
        if not self.segments and self.history:  # a result from before segments were recorded
            self.segments = segments_from(self)
        if self.segments and self.segments[-1]["precision"] != precision and not self.segments[-1]["steps"]:
            self.segments.pop()
        if self.segments and self.segments[-1]["precision"] == precision:
            return
        self.segments.append(
            {"precision": precision, "from_step": from_step, "to_step": from_step - 1, "steps": 0}
        )

    def add_step(self, record: StepRecord) -> None:
        """Append ``record`` to the history; the current segment now ends at its step."""
        self.history.append(record)
        if self.segments:
            current = self.segments[-1]
            current["to_step"] = record.step
            current["steps"] = record.step - current["from_step"] + 1

    def median_step_time(self, warmup: int = 0) -> float | None:
        """Median step time in seconds, excluding the first ``warmup`` steps."""
        times = [r.time_s for r in self.history[warmup:]]
        return statistics.median(times) if times else None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (history as a list of dicts)."""
        data = dataclasses.asdict(self)
        data["skipped_steps"] = self.skipped_steps
        data["final_loss_scale"] = self.final_loss_scale
        data["median_step_time_s"] = self.median_step_time()
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunResult:
        """Inverse of :meth:`to_dict`."""
        names = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in names}
        values["history"] = [StepRecord(**r) for r in data.get("history", [])]
        values["evals"] = [EvalRecord(**r) for r in data.get("evals", [])]
        values["segments"] = [dict(s) for s in data.get("segments") or []]
        return cls(**values)


def segments_from(result: RunResult) -> list[dict[str, Any]]:
    """Segments of a result recorded without them, rebuilt from its history and fallbacks."""
    first = result.fallbacks[0]["from"] if result.fallbacks else result.precision
    starts = [(first, 1)] + [(f["to"], int(f["step"]) + 1) for f in result.fallbacks]
    last = result.history[-1].step if result.history else 0
    ends = [begin - 1 for _, begin in starts[1:]] + [last]
    return [
        {"precision": mode, "from_step": begin, "to_step": end, "steps": max(0, end - begin + 1)}
        for (mode, begin), end in zip(starts, ends, strict=True)
    ]
