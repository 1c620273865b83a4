"""``--on-nonfinite skip|fallback|stop``: what a run does when its numbers stop being numbers.

``skip`` (default) is the GradScaler's rule, extended to modes without a scaler: a step whose
unscaled gradients are inf/NaN is not applied. ``fallback`` also moves fp16-mixed ->
bf16-mixed (where the hardware has bf16) -> fp32 after ``fallback_after`` consecutive skipped
steps or when the loss scale drops under ``fallback_scale_floor``; the switch swaps the
precision and its scaler in place, keeping weights and optimizer state. ``stop`` ends the run
with :class:`~.localize.NonFiniteError` at a non-finite loss, at a skipped step of a mode
without a scaler, or when the fallback condition is met (a scaler's occasional overflow skip
is routine and does not stop a run).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import torch

from ..errors import UsageError
from ..hardware.capabilities import DeviceCaps
from ..precision import MODES, ModeSpec, Precision
from .localize import AnomalyHooks, NonFiniteError, NonFiniteEvent, localize_step, value_kind
from .telemetry import describe_telemetry, low_precision_flop_share, step_telemetry

if TYPE_CHECKING:
    from ..engine.records import RunResult, StepRecord
    from ..engine.setup import RunSetup

log = logging.getLogger("ampkit")

#: Valid ``on_nonfinite`` values.
POLICIES = ("skip", "fallback", "stop")
#: At most this many non-finite events are kept in ``RunResult.nonfinite`` (the rest are counted).
MAX_EVENTS = 100


def next_mode(spec: ModeSpec, caps: DeviceCaps) -> str | None:
    """The mode to fall back to from ``spec``: fp16-mixed -> bf16-mixed (bf16 in hardware) -> fp32.

    Only mixed modes with fp32 weights and TF32 off can switch in place (same parameters, same
    global flags); None for the others and at the end of the chain.
    """
    if not spec.is_mixed or spec.param_dtype != torch.float32 or spec.tf32:
        return None
    if spec.compute_dtype != torch.bfloat16 and caps.bf16_in_hardware and "bf16-mixed" in MODES:
        return "bf16-mixed"
    return "fp32"


def switch_precision(run: RunSetup, mode: str) -> Precision:
    """Rebuild ``run``'s precision and scaler as ``mode``; model weights and optimizer state stay."""
    old = run.precision
    new = Precision(mode, old.device, keep_fp32=old.keep_fp32, caps=old.caps)
    run.precision = new
    run.optimizer.set_precision(new)
    return new


class NumericsGuard:
    """Watches every step of a run: localises non-finite steps and applies the policy."""

    def __init__(self, run: RunSetup, result: RunResult):
        config = run.config
        self.policy = config.on_nonfinite
        if self.policy not in POLICIES:
            raise UsageError(f"--on-nonfinite {self.policy}: valid: {', '.join(POLICIES)}")
        if config.fallback_after < 1:
            raise UsageError(f"--fallback-after {config.fallback_after}: must be >= 1")
        self.after = config.fallback_after
        self.floor = config.fallback_scale_floor
        self.streak = 0
        self._warned_end = False
        self._run = run  # finish() reads the scaler and mode the run ended with
        run.optimizer.skip_nonfinite = True  # no NaN updates under any policy
        if config.flop_share and not result.history:  # before the hooks: the probe is not a step
            result.numerics["flop_share"] = low_precision_flop_share(run)
        self.hooks = AnomalyHooks(run.model) if config.detect_anomaly else None

    def _trigger(self, run: RunSetup) -> str | None:
        """Why the current mode should be abandoned, or None."""
        if self.streak >= self.after:
            return f"{self.streak} consecutive skipped steps"
        scaler = run.optimizer.scaler
        if scaler.is_enabled() and scaler.get_scale() < self.floor:
            return f"loss scale {scaler.get_scale():g} < {self.floor:g}"
        return None

    def after_step(self, record: StepRecord, run: RunSetup, result: RunResult) -> None:
        """Check one finished step; may switch precision (fallback) or raise NonFiniteError (stop)."""
        mode = run.precision.name
        event = localize_step(
            record.step, mode, record.loss, record.grad_norm, record.applied, record.loss_scale, self.hooks
        )
        self.streak = 0 if record.applied else self.streak + 1
        if event is not None:
            self._record(event, result)
        reason = self._trigger(run)
        if self.policy == "stop" and event is not None:
            scaler_skip = run.optimizer.scaler.is_enabled() and value_kind(record.loss) is None
            if reason is not None or not scaler_skip:
                raise NonFiniteError(event)
        if self.policy != "fallback" or reason is None:
            return
        target = next_mode(run.precision.spec, run.precision.caps)
        if target is None:
            if not self._warned_end:
                log.warning(
                    "ampkit: %s at step %d but no mode to fall back to from %s; skipping steps",
                    reason,
                    record.step,
                    mode,
                )
                self._warned_end = True
            return
        switch_precision(run, target)
        self.streak = 0
        result.fallbacks.append({"step": record.step, "from": mode, "to": target, "reason": reason})
        share = result.numerics.get("flop_share")
        if share:  # the share describes the mode that runs now; the first mode's stays as flop_share_initial
            result.numerics.setdefault("flop_share_initial", share)
            result.numerics["flop_share"] = low_precision_flop_share(run)
        log.warning("ampkit: fallback at step %d: %s -> %s (%s)", record.step, mode, target, reason)

    def _record(self, event: NonFiniteEvent, result: RunResult) -> None:
        if len(result.nonfinite) < MAX_EVENTS:
            result.nonfinite.append(event.to_dict())
        if self.streak <= 1:  # one line per streak of bad steps
            log.warning("ampkit: non-finite: %s", event.describe())

    def finish(self, result: RunResult) -> None:
        """Remove hooks; put the run's telemetry into ``result.numerics`` and log it (one line)."""
        if self.hooks is not None:
            self.hooks.remove()
        result.numerics.update(step_telemetry(result.history))
        scaler = self._run.optimizer.scaler
        result.numerics["mode_final"] = self._run.precision.name
        # after the last update (halved by a skip at the last step), not the scale that step used
        result.numerics["loss_scale_final"] = float(scaler.get_scale()) if scaler.is_enabled() else None
        log.info(describe_telemetry(result.numerics))


def resume_precision(run: RunSetup, state: dict[str, Any]) -> None:
    """After a fallback, a resumed run continues in the mode the checkpoint fell back to."""
    fallbacks = state.get("result", {}).get("fallbacks") or []
    if fallbacks and state.get("precision") != run.precision.name:
        switch_precision(run, state["precision"])
        log.info("ampkit: resuming in %s (fell back at step %d)", state["precision"], fallbacks[-1]["step"])
