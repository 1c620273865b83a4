"""The stateful half of the switch: loss scaling, accumulation, clipping, stepping, in one code path.

:class:`PrecisionOptimizer` wraps any ``torch.optim.Optimizer``. As in nanoGPT there is one
path for every mode: a disabled GradScaler is a no-op, so fp32, bf16 and fp16 run the same
lines. The order is the one that is easy to get wrong by hand: scaled backward ->
(accumulate) -> unscale (once, also when the user asked for it with :meth:`unscale_`) -> clip
-> non-finite check -> step -> scaler update -> scheduler (only if the step was applied) -> zero_grad.
Several optimizers behind one loss share the scaler, the clip and the skip decision (:mod:`.several`);
what the constructor accepts is checked in :mod:`.guards`; ``rebind`` and ``set_precision`` live in
:mod:`.rewrap`, ``state_dict`` in :mod:`.checkpoint`, the ``torch.optim.Optimizer`` face in :mod:`.delegation`.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from typing import Any, TypeVar, overload

import torch
from torch import nn

from ..precision import Precision, PrecisionError
from ..warn import warn
from . import guards, scaler_state, several
from .checkpoint import Checkpointed
from .finite import float32_norm, grads_finite
from .outcome import NO_GRADIENTS, NONFINITE_GRADIENTS, SCALER_SKIPPED, StepOutcome
from .settings import has_grads
from .weights import WeightWatch

T = TypeVar("T")


class PrecisionOptimizer(Checkpointed):
    """Wraps ``optimizer`` with ``precision``'s loss scaling, plus accumulation and clipping.

    Use ``backward(loss)`` once per micro-batch (inside ``sync_context()`` under DDP), then
    ``step()`` when :attr:`ready`; ``unscale_()`` in between when you need the true gradients.
    ``grad_norm`` is computed when clipping or when ``track_grad_norm`` is set (a clip of 0: none).
    ``skip_nonfinite`` (default on) skips updates with inf/NaN gradients in modes without a
    loss scaler too, as the GradScaler does for fp16-mixed. ``optimizer`` may be a list (one
    loss, several optimizers); ``precision`` a mode name (:func:`.guards.as_precision`). It is a
    ``torch.optim.Optimizer`` whose groups, state and defaults are the wrapped one's (:mod:`.delegation`).
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer | list[torch.optim.Optimizer],
        precision: Precision | str,
        *,
        model: nn.Module | None = None,
        accumulate: int = 1,
        clip_grad_norm: float | None = None,
        clip_grad_value: float | None = None,
        scheduler: Any | None = None,
        track_grad_norm: bool = False,
        skip_nonfinite: bool = True,
    ):
        optimizers = guards.as_optimizers(optimizer)
        self.accumulate = accumulate  # the setters check these three
        self.clip_grad_norm = clip_grad_norm
        self.clip_grad_value = clip_grad_value
        precision = guards.as_precision(precision, optimizers)
        self._optimizers = optimizers
        self.precision = precision
        self.model = model
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
        self._watch = WeightWatch()
        self._port_ok = False  # opt.backward() was called (or its absence warned about)
        guards.check_half_params(self.scaler, self._params())
        self._check_groups()
        self._note_scaler()

    # -- the loop -------------------------------------------------------------------------------
    @property
    def ready(self) -> bool:
        """True once ``accumulate`` micro-batches have been backpropagated (by :meth:`backward`)."""
        if not self._port_ok:
            self._check_port("ready")
        return self._micro >= self.accumulate

    def _check_port(self, call: str) -> None:
        """Until the first :meth:`backward`: gradients made without it are warned about, once."""
        if any(map(has_grads, self._optimizers)):
            self._port_ok = True
            warn(guards.half_port(call), UserWarning)

    def sync_context(self) -> contextlib.AbstractContextManager[Any]:
        """``model.no_sync()`` for micro-batches before the last one when the model is DDP-wrapped."""
        if isinstance(self.model, nn.parallel.DistributedDataParallel) and self._micro + 1 < self.accumulate:
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
        self._port_ok = True

    def unscale_(self) -> None:
        """Divide the gradients by the loss scale now, so every ``.grad`` holds its true value
        (densification statistics, logging, custom clipping) until the next :meth:`step`, which
        does not unscale again and still clips once. Idempotent; a no-op without a loss scaler."""
        if self._unscaled:
            return
        if 0 < self._micro < self.accumulate:
            raise PrecisionError(guards.not_ready("unscale_", self._micro, self.accumulate))
        self._unscale()

    def _unscale(self) -> None:
        if self._unscaled:
            return
        if self.scaler.is_enabled():  # no gradients: nothing to unscale, no empty inf check recorded
            done = scaler_state.already_unscaled
            pending = [o for o in self._optimizers if has_grads(o) and not done(self.scaler, o)]
            if pending and self._micro == 0:
                raise PrecisionError(guards.unscaled_backward(self._another_scaled()))
            for optimizer in pending:
                self.scaler.unscale_(optimizer)
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

    @overload  # type: ignore[override]  # torch's step returns None (or the closure's float)
    def step(self, closure: None = None) -> StepOutcome: ...
    @overload
    def step(self, closure: Callable[[], T]) -> T: ...
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """Unscale -> clip -> check -> step -> scaler update -> scheduler -> zero_grad; returns the outcome.

        Never raises for a step it cannot apply: no gradient at all, non-finite gradients
        (``skip_nonfinite``) and scaler skips come back as ``applied=False`` with a ``reason``.
        Raises in the middle of an accumulation (before :attr:`ready`), as :meth:`unscale_` does.
        ``step(closure)``: the closure (which calls ``opt.backward(loss)``) runs first, with gradients
        enabled, and its return value is returned, as torch's optimizers do.
        """
        if closure is not None:
            return self._closure_step(closure)
        if len(self._optimizers[0].param_groups) != self._groups:  # add_param_group on the wrapped one
            self._check_new_groups()
        if 0 < self._micro < self.accumulate:
            raise PrecisionError(guards.not_ready("step", self._micro, self.accumulate))
        enabled = self.scaler.is_enabled()
        scale = self.scaler.get_scale() if enabled else None
        grads = self._grads()
        if not grads:
            for optimizer in self._optimizers:  # an unscale_() whose gradients were dropped
                scaler_state.settle(self.scaler, optimizer)
            next_scale = self.scaler.get_scale() if enabled else None
            return self._finish(False, None, scale, next_scale, NO_GRADIENTS)
        if enabled and self._micro == 0:
            raise PrecisionError(guards.unscaled_backward(self._another_scaled()))
        if not self._port_ok:
            self._check_port("step()")
        norm = self._norm(grads)
        grad_norm = None if norm is None else float(norm)  # the one host sync, when a norm is wanted
        if grad_norm is not None and not math.isfinite(grad_norm):  # float16 overflows past 65504
            norm, grad_norm = float32_norm(grads)
        if not enabled and self.skip_nonfinite and not grads_finite(grads, grad_norm):
            return self._finish(False, grad_norm, None, None, self._skip_reason(NONFINITE_GRADIENTS))
        self._clip(norm)
        stepping = [o for o in self._optimizers if has_grads(o)]
        if enabled and len(self._optimizers) > 1:  # one skip decision for all (torch: one per optimizer)
            self._unscale()
            scaler_state.share_inf_checks(self.scaler, self._optimizers, stepping)
        for optimizer in stepping:
            self.scaler.step(optimizer)  # a disabled scaler just calls optimizer.step()
        if not enabled:
            return self._finish(True, grad_norm, None, None, None)
        self.scaler.update()
        next_scale = self.scaler.get_scale()
        applied = scale is not None and next_scale >= scale
        reason = None if applied else self._skip_reason(SCALER_SKIPPED)
        return self._finish(applied, grad_norm, scale, next_scale, reason)

    def _skip_reason(self, default: str) -> str:
        """``default``, or ``"non-finite weights"`` when an earlier update wrote inf/NaN (warned once)."""
        return self._watch.reason(self._params(), self.steps + 1, self.precision.name, default)

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
            self._watch.last_applied = self.steps
            for scheduler in several.as_schedulers(self.scheduler):
                scheduler.step()
        else:
            self.skipped_steps += 1
        for optimizer in self._optimizers:
            optimizer.zero_grad(set_to_none=True)
        self._micro = 0
        self._unscaled = False
        return StepOutcome(self.steps, applied, grad_norm, scale, next_scale, reason)

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Drop gradients (``set_to_none=False``: zero them in place) and any partial accumulation."""
        for optimizer in self._optimizers:
            scaler_state.settle(self.scaler, optimizer)
            optimizer.zero_grad(set_to_none=set_to_none)
        self._micro = 0
        self._unscaled = False

    @contextlib.contextmanager
    def accumulating(self) -> Iterator[None]:
        """Alias of :meth:`sync_context` usable as ``with opt.accumulating():``."""
        with self.sync_context():
            yield
