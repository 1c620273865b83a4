"""The stateful half of the switch: loss scaling, accumulation, clipping, stepping, in one code path.

:class:`PrecisionOptimizer` wraps any ``torch.optim.Optimizer``. As in nanoGPT there is one
path for every mode: a disabled GradScaler is a no-op, so fp32, bf16 and fp16 run the same
lines. The order is the one that is easy to get wrong by hand: scaled backward ->
(accumulate) -> unscale -> clip -> step -> scaler update -> scheduler (only if the step was
applied) -> zero_grad.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .precision import Precision, PrecisionError


@dataclass(frozen=True)
class StepOutcome:
    """What happened at one optimizer step."""

    step: int
    """Optimizer steps attempted so far, this one included (1-based)."""
    applied: bool
    """False when the GradScaler found inf/NaN gradients and skipped the update."""
    grad_norm: float | None
    """Total 2-norm of the *unscaled* gradients before clipping (None when not computed)."""
    loss_scale: float | None
    """Loss scale this step's gradients were computed with (None without a scaler)."""
    next_loss_scale: float | None
    """Loss scale after the scaler's update (halved after a skipped step)."""

    @property
    def skipped(self) -> bool:
        """The opposite of :attr:`applied`."""
        return not self.applied


def _is_ddp(model: nn.Module | None) -> bool:
    return isinstance(model, nn.parallel.DistributedDataParallel)


class PrecisionOptimizer:
    """Wraps ``optimizer`` with ``precision``'s loss scaling, plus accumulation and clipping.

    Use ``backward(loss)`` once per micro-batch (inside ``sync_context()`` under DDP), then
    ``step()`` when :attr:`ready`. ``grad_norm`` is computed when clipping by norm or when
    ``track_grad_norm`` is set.
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        precision: Precision,
        *,
        model: nn.Module | None = None,
        accumulate: int = 1,
        clip_grad_norm: float | None = None,
        clip_grad_value: float | None = None,
        scheduler: Any | None = None,
        track_grad_norm: bool = False,
        skip_nonfinite: bool = False,
    ):
        if accumulate < 1:
            raise PrecisionError(f"accumulate={accumulate}; valid: an integer >= 1")
        self.optimizer = optimizer
        self.precision = precision
        self.model = model
        self.accumulate = accumulate
        self.clip_grad_norm = clip_grad_norm
        self.clip_grad_value = clip_grad_value
        self.scheduler = scheduler
        self.track_grad_norm = track_grad_norm
        #: Skip the update when the unscaled gradient norm is inf/NaN, as the GradScaler does for
        #: fp16 (bf16/fp32 have no scaler, so NaN updates would otherwise reach the weights).
        self.skip_nonfinite = skip_nonfinite
        self.scaler = precision.make_scaler()
        self.steps = 0
        self.skipped_steps = 0
        self._micro = 0
        self._check_param_dtypes()

    # -- guards -----------------------------------------------------------------------------------
    def _params(self) -> list[torch.Tensor]:
        return [p for group in self.optimizer.param_groups for p in group["params"]]

    def _check_param_dtypes(self) -> None:
        if not self.scaler.is_enabled():
            return
        half = [p for p in self._params() if p.requires_grad and p.dtype == torch.float16]
        if half:
            raise PrecisionError(
                f"{len(half)} trainable parameters are float16 under a GradScaler, which cannot unscale fp16 "
                "gradients ('Attempting to unscale FP16 gradients'): keep fp32 weights (fp16-mixed: "
                "precision.prepare(model) leaves them fp32) or use fp16-true, which runs without a scaler"
            )

    # -- the loop -------------------------------------------------------------------------------
    @property
    def ready(self) -> bool:
        """True once ``accumulate`` micro-batches have been backpropagated."""
        return self._micro >= self.accumulate

    def sync_context(self) -> contextlib.AbstractContextManager[Any]:
        """``model.no_sync()`` for micro-batches before the last one when the model is DDP-wrapped."""
        if _is_ddp(self.model) and self._micro + 1 < self.accumulate:
            assert self.model is not None
            return self.model.no_sync()  # type: ignore[operator]
        return contextlib.nullcontext()

    def backward(self, loss: torch.Tensor) -> None:
        """Scaled backward of ``loss`` (divided by ``accumulate`` so gradients average over micro-batches)."""
        if self.accumulate > 1:
            loss = loss / self.accumulate
        self.scaler.scale(loss).backward()
        self._micro += 1

    def _unscaled_grad_norm(self) -> float | None:
        clipping = self.clip_grad_norm is not None or self.clip_grad_value is not None
        if not (clipping or self.track_grad_norm or self.skip_nonfinite):
            return None
        self.scaler.unscale_(self.optimizer)
        params = [p for p in self._params() if p.grad is not None]
        if self.clip_grad_norm is not None:
            norm = nn.utils.clip_grad_norm_(params, self.clip_grad_norm)
        else:
            norm = nn.utils.get_total_norm([p.grad for p in params if p.grad is not None])
        if self.clip_grad_value is not None:
            nn.utils.clip_grad_value_(params, self.clip_grad_value)
        return float(norm)

    def step(self) -> StepOutcome:
        """Unscale -> clip -> step -> scaler update -> scheduler -> zero_grad; returns the outcome."""
        enabled = self.scaler.is_enabled()
        if enabled and self._micro == 0:
            raise PrecisionError(
                "optimizer step without a scaled backward: loss.backward() was called directly, so the loss was "
                "never scaled; call opt.backward(loss) instead"
            )
        scale = self.scaler.get_scale() if enabled else None
        grad_norm = self._unscaled_grad_norm()
        if self.skip_nonfinite and not enabled and not is_finite(grad_norm):
            applied, next_scale = False, None  # the scaler's rule, for modes without a scaler
        else:
            self.scaler.step(self.optimizer)
            self.scaler.update()
            next_scale = self.scaler.get_scale() if enabled else None
            applied = not enabled or (next_scale is not None and scale is not None and next_scale >= scale)
        self.steps += 1
        if applied:
            if self.scheduler is not None:
                self.scheduler.step()
        else:
            self.skipped_steps += 1
        self.optimizer.zero_grad(set_to_none=True)
        self._micro = 0
        return StepOutcome(self.steps, applied, grad_norm, scale, next_scale)

    def set_precision(self, precision: Precision) -> None:
        """Switch to another precision mid-run (numerics fallback): a fresh scaler for the new mode;
        the wrapped optimizer, its state, the step counters and the parameters are kept."""
        self.precision = precision
        self.scaler = precision.make_scaler()
        self._check_param_dtypes()

    def zero_grad(self) -> None:
        """Drop gradients and any partial accumulation."""
        self.optimizer.zero_grad(set_to_none=True)
        self._micro = 0

    @contextlib.contextmanager
    def accumulating(self) -> Iterator[None]:
        """Alias of :meth:`sync_context` usable as ``with opt.accumulating():``."""
        with self.sync_context():
            yield

    # -- state ------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Optimizer, scaler and scheduler state plus step counters."""
        return {
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "steps": self.steps,
            "skipped_steps": self.skipped_steps,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` saved (scaler included)."""
        self.optimizer.load_state_dict(state["optimizer"])
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        if self.scheduler is not None and state.get("scheduler") is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        self.steps = int(state.get("steps", 0))
        self.skipped_steps = int(state.get("skipped_steps", 0))
        self._micro = 0


def is_finite(value: float | None) -> bool:
    """True for a finite float; None counts as finite (nothing was measured)."""
    return value is None or math.isfinite(value)
