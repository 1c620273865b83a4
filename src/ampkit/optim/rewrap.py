"""Changing what a :class:`~ampkit.optim.PrecisionOptimizer` wraps mid-run, without losing the run.

:class:`Rewrappable` holds the two calls a script makes between steps when its optimizer or
its precision changes: :meth:`~Rewrappable.rebind` (the ``torch.optim`` optimizer rebuilt after
densification or pruning; the scheduler is re-pointed, :mod:`.rebind`) and
:meth:`~Rewrappable.set_precision` (numerics fallback: a fresh scaler for the new mode). Step
counters, the loss scale (on rebind) and the parameters are kept. Neither is on the per-step path.
"""

from __future__ import annotations

from typing import Any

import torch

from ..precision import Precision
from . import guards, scaler_state, several
from .rebind import carry_schedule
from .settings import Wrapped


class Rewrappable(Wrapped):
    """:meth:`rebind` and :meth:`set_precision`; :class:`PrecisionOptimizer` builds on it."""

    precision: Precision
    scheduler: Any | None
    _unscaled: bool

    # -- changing what is wrapped -------------------------------------------------------------
    def rebind(
        self, optimizer: torch.optim.Optimizer | list[torch.optim.Optimizer], *, scheduler: Any | None = None
    ) -> None:
        """Wrap ``optimizer`` from now on (rebuilt after densification or pruning), keeping the step
        counters, the loss scale and the scheduler — re-pointed at ``optimizer``, each new param
        group continuing the schedule of the old group with the same ``"name"`` (else position), or
        ``scheduler`` instead when given; a scheduler built on the wrapper itself (``StepLR(opt)``)
        keeps pointing at it, the new groups continuing the old groups' lr. Editing ``param_groups`` in place needs no call at all.
        A wrapper of several optimizers takes a list of as many (the unchanged ones as they are)."""
        new = guards.as_optimizers(optimizer, count=len(self._optimizers))
        pairs = [(old, fresh) for old, fresh in zip(self._optimizers, new) if fresh is not old]
        if pairs:
            guards.check_half_params(self.scaler, self._params([fresh for _, fresh in pairs]))
        for old, fresh in pairs:
            if self._unscaled and self.scaler.is_enabled():
                scaler_state.move(self.scaler, old, fresh)  # this step's gradients stay unscaled once
            if hasattr(self.__dict__.get("step"), "_wrapped_by_lr_sched"):
                carry_schedule(old, fresh)  # a scheduler built on the wrapper: its groups' lr continue
        if scheduler is not None:
            self.scheduler = scheduler
        else:
            several.repoint_schedules(several.as_schedulers(self.scheduler), pairs, len(new) == 1)
        self._optimizers = new
        self._check_groups()

    def set_precision(self, precision: Precision) -> None:
        """Switch to another precision mid-run (numerics fallback): a fresh scaler for the new mode;
        the wrapped optimizer, its state, the step counters and the parameters are kept."""
        self.precision = precision
        self.scaler = precision.make_scaler()
        self._unscaled = False
        guards.check_half_params(self.scaler, self._params())
        self._check_groups()
        self._note_scaler()
