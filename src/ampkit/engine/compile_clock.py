"""Compile time of a compiled model's training steps, apart from their step times (``--compile``)."""

from __future__ import annotations

from typing import Any

from ..precision.compile import compile_seconds, compile_state


class CompileClock:
    """Compile time of a compiled model's training steps, kept apart from their step times.

    Around each step it reads :func:`compile_seconds`; a step during which dynamo compiled (the
    first, and any recompile) is a *compile step*: its compile seconds and its whole wall time are
    recorded here (its step time stays in the history, where warm-up excludes it from figures).
    """

    def __init__(self, model: Any):
        self.state = compile_state(model)
        self.start_s = compile_seconds()
        self.steps: list[int] = []
        self.compile_s = 0.0
        self.wall_s = 0.0
        self.first_step_s: float | None = None
        self._before: float | None = None

    def before_step(self) -> None:
        """Call right before a step starts."""
        self._before = compile_seconds()

    def after_step(self, step: int, wall_s: float) -> None:
        """Call with the step's number and its (device-synchronised) wall time."""
        if self.first_step_s is None:
            self.first_step_s = wall_s
        now = compile_seconds()
        if now is None or self._before is None:
            return
        if now > self._before:
            self.steps.append(step)
            self.compile_s += now - self._before
            self.wall_s += wall_s

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: status, backend, reason and the compile-time figures (seconds)."""
        state = (
            self.state.to_dict() if self.state is not None else {"status": "eager", "reason": "not compiled"}
        )
        now = compile_seconds()
        timers = now is not None and self.start_s is not None
        return {
            **state,
            "compile_s": self.compile_s if timers else None,
            "compile_steps": self.steps,
            "compile_step_wall_s": self.wall_s if timers else None,
            "first_step_s": self.first_step_s,
            "total_compile_s": now - self.start_s if timers else None,  # type: ignore[operator]
            "method": "torch._dynamo.utils.calculate_time_spent() (frame + backward compile) read around "
            "each step; total includes compiles during evaluation"
            if timers
            else "unavailable: torch does not expose its compile timers",
        }
