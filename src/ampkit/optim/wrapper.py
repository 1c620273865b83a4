"""The stateful half of the switch: loss scaling, accumulation, clipping, stepping, in one code path.

:class:`PrecisionOptimizer` wraps any ``torch.optim.Optimizer``. As in nanoGPT there is one
path for every mode: a disabled GradScaler is a no-op, so fp32, bf16 and fp16 run the same
lines. The order is the one that is easy to get wrong by hand: scaled backward ->
(accumulate) -> unscale (once, also when the user asked for it with :meth:`unscale_`) -> clip
-> non-finite check -> step -> scaler update -> scheduler (only if the step was applied) -> zero_grad.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from ..precision import Precision, PrecisionError
from . import scaler_state
from .finite import exactly_finite, grads_finite
from .outcome import NO_GRADIENTS, NONFINITE_GRADIENTS, SCALER_SKIPPED, StepOutcome, is_finite
from .rebind import carry_schedule, repoint_scheduler

_UNSCALED_BACKWARD = (
    "optimizer step without a scaled backward: loss.backward() was called directly, so the loss was "
    "never scaled; call opt.backward(loss) instead"
)


def _is_ddp(model: nn.Module | None) -> bool:
    return isinstance(model, nn.parallel.DistributedDataParallel)


class PrecisionOptimizer:
    """Wraps ``optimizer`` with ``precision``'s loss scaling, plus accumulation and clipping.

    Use ``backward(loss)`` once per micro-batch (inside ``sync_context()`` under DDP), then
    ``step()`` when :attr:`ready`; ``unscale_()`` in between when you need the true gradients.
    ``grad_norm`` is computed when clipping or when ``track_grad_norm`` is set.
    ``skip_nonfinite`` (default on) skips updates with inf/NaN gradients in modes without a
    loss scaler too, as the GradScaler does for fp16-mixed.
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
        skip_nonfinite: bool = True,
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
        #: Skip the update when a gradient is inf/NaN in modes without a scaler (bf16, fp32, true-half),
        #: as the GradScaler does for fp16-mixed. Off: such updates write NaN into the weights.
        self.skip_nonfinite = skip_nonfinite
        self.scaler = precision.make_scaler()
        self.steps = 0
        #: Steps not applied: scaler skips, non-finite gradients, steps without any gradient.
        self.skipped_steps = 0
        self._micro = 0
        self._unscaled = False  # gradients hold their true values until the next step
        self._check_param_dtypes(self._params(optimizer))

    # -- guards -----------------------------------------------------------------------------------
    def _params(self, optimizer: torch.optim.Optimizer | None = None) -> list[torch.Tensor]:
        groups = (optimizer or self.optimizer).param_groups
        return [p for group in groups for p in group["params"]]

    def _grads(self) -> list[torch.Tensor]:
        return [p.grad for p in self._params() if p.grad is not None]

    def _check_param_dtypes(self, params: list[torch.Tensor]) -> None:
        if not self.scaler.is_enabled():
            return
        half = [p for p in params if p.requires_grad and p.dtype == torch.float16]
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
        if self._unscaled:
            raise PrecisionError(
                "opt.backward() after opt.unscale_(): this step's gradients were already unscaled; call "
                "unscale_() once, after the last opt.backward() and before opt.step()"
            )
        if self.accumulate > 1:
            loss = loss / self.accumulate
        self.scaler.scale(loss).backward()
        self._micro += 1

    def unscale_(self) -> None:
        """Divide the gradients by the loss scale now, so every ``.grad`` holds its true value
        (densification statistics, logging, custom clipping) until the next :meth:`step`, which
        does not unscale again and still clips once. Idempotent; a no-op without a loss scaler."""
        if self._unscaled:
            return
        if 0 < self._micro < self.accumulate:
            raise PrecisionError(
                f"opt.unscale_() after {self._micro} of {self.accumulate} micro-batches: the gradients are "
                "complete once opt.ready; call it after the last opt.backward() and before opt.step()"
            )
        self._unscale()

    def _unscale(self) -> None:
        if self._unscaled:
            return
        pending = self.scaler.is_enabled() and not scaler_state.already_unscaled(self.scaler, self.optimizer)
        if pending and self._grads():  # no gradients: nothing to unscale, no empty inf check recorded
            if self._micro == 0:
                raise PrecisionError(_UNSCALED_BACKWARD)
            self.scaler.unscale_(self.optimizer)
        self._unscaled = True

    def _norm(self, grads: list[torch.Tensor]) -> torch.Tensor | None:
        """The unscaled total 2-norm, when clipping or tracking wants it (unscales first)."""
        if self.clip_grad_norm is None and self.clip_grad_value is None and not self.track_grad_norm:
            return None
        self._unscale()
        return nn.utils.get_total_norm(grads)

    def _clip(self, norm: torch.Tensor | None) -> None:
        """clip_grad_norm_ (= get_total_norm + clip_grads_with_norm_, reusing ``norm``), then clip by value."""
        params = [p for p in self._params() if p.grad is not None]
        if self.clip_grad_norm is not None and norm is not None:
            nn.utils.clip_grads_with_norm_(params, self.clip_grad_norm, norm)
        if self.clip_grad_value is not None:
            nn.utils.clip_grad_value_(params, self.clip_grad_value)

    def _finite(self, grads: list[torch.Tensor], grad_norm: float | None) -> bool:
        """Whether the gradients are finite; free when the norm is known (a non-finite 2-norm is confirmed
        on the gradients themselves: in fp16-true the norm of finite gradients can overflow)."""
        if grad_norm is None:
            return grads_finite(grads)
        return is_finite(grad_norm) or exactly_finite(grads)

    def step(self) -> StepOutcome:
        """Unscale -> clip -> check -> step -> scaler update -> scheduler -> zero_grad; returns the outcome.

        Never raises for a step it cannot apply: no gradient at all, non-finite gradients
        (``skip_nonfinite``) and scaler skips come back as ``applied=False`` with a ``reason``.
        """
        enabled = self.scaler.is_enabled()
        scale = self.scaler.get_scale() if enabled else None
        grads = self._grads()
        if not grads:
            scaler_state.settle(self.scaler, self.optimizer)  # an unscale_() whose gradients were dropped
            next_scale = self.scaler.get_scale() if enabled else None
            return self._finish(False, None, scale, next_scale, NO_GRADIENTS)
        if enabled and self._micro == 0:
            raise PrecisionError(_UNSCALED_BACKWARD)
        norm = self._norm(grads)
        grad_norm = None if norm is None else float(norm)  # the one host sync, when a norm is wanted
        if not enabled and self.skip_nonfinite and not self._finite(grads, grad_norm):
            return self._finish(False, grad_norm, None, None, NONFINITE_GRADIENTS)
        self._clip(norm)
        self.scaler.step(self.optimizer)  # a disabled scaler just calls optimizer.step()
        if not enabled:
            return self._finish(True, grad_norm, None, None, None)
        self.scaler.update()
        next_scale = self.scaler.get_scale()
        applied = scale is not None and next_scale >= scale
        return self._finish(applied, grad_norm, scale, next_scale, None if applied else SCALER_SKIPPED)

    def _finish(
        self,
        applied: bool,
        grad_norm: float | None,
        scale: float | None,
        next_scale: float | None,
        reason: str | None,
    ) -> StepOutcome:
        self.steps += 1
        if applied:
            if self.scheduler is not None:
                self.scheduler.step()
        else:
            self.skipped_steps += 1
        self.optimizer.zero_grad(set_to_none=True)
        self._micro = 0
        self._unscaled = False
        return StepOutcome(self.steps, applied, grad_norm, scale, next_scale, reason)

    # -- changing what is wrapped -------------------------------------------------------------
    def rebind(self, optimizer: torch.optim.Optimizer, *, scheduler: Any | None = None) -> None:
        """Wrap ``optimizer`` from now on (rebuilt after densification or pruning), keeping the step
        counters, the loss scale and the scheduler — re-pointed at ``optimizer``, each new param
        group continuing the schedule of the old group with the same ``"name"`` (else position), or
        ``scheduler`` instead when given. Editing ``param_groups`` in place needs no call at all."""
        old = self.optimizer
        if optimizer is old:
            return
        self._check_param_dtypes(self._params(optimizer))
        if self._unscaled and self.scaler.is_enabled():
            scaler_state.move(self.scaler, old, optimizer)  # this step's gradients stay unscaled once
        if scheduler is not None:
            self.scheduler = scheduler
        elif self.scheduler is not None:
            repoint_scheduler(self.scheduler, optimizer, carry_schedule(old, optimizer))
        self.optimizer = optimizer

    def set_precision(self, precision: Precision) -> None:
        """Switch to another precision mid-run (numerics fallback): a fresh scaler for the new mode;
        the wrapped optimizer, its state, the step counters and the parameters are kept."""
        self.precision = precision
        self.scaler = precision.make_scaler()
        self._unscaled = False
        self._check_param_dtypes(self._params())

    def zero_grad(self) -> None:
        """Drop gradients and any partial accumulation."""
        scaler_state.settle(self.scaler, self.optimizer)
        self.optimizer.zero_grad(set_to_none=True)
        self._micro = 0
        self._unscaled = False

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
        self._unscaled = False
