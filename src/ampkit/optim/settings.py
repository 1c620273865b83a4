"""What a :class:`~ampkit.optim.PrecisionOptimizer` wraps and its settings, checked on every assignment.

:class:`Wrapped` holds the optimizers (one, or several behind one loss) and the settings a
script may change mid-run: ``accumulate``, ``clip_grad_norm``, ``clip_grad_value``. Each is
checked when it is set (:mod:`.guards`), in the constructor and later alike, so
``opt.clip_grad_norm = 0`` turns clipping off instead of zeroing every gradient. It builds on
:class:`~.delegation.OptimizerFace`, the ``torch.optim.Optimizer`` face.
"""

from __future__ import annotations

import weakref
from typing import Any, ClassVar

import torch

from . import guards
from .delegation import OptimizerFace


def has_grads(optimizer: torch.optim.Optimizer) -> bool:
    """Whether any parameter of ``optimizer`` has a ``.grad``."""
    return any(p.grad is not None for g in optimizer.param_groups for p in g["params"])


class Wrapped(OptimizerFace):
    """The optimizers and the checked settings; :class:`PrecisionOptimizer` builds on it."""

    #: Wrappers alive with a loss scaler: one of them may have made another's gradients.
    _scaled: ClassVar[weakref.WeakSet[Wrapped]] = weakref.WeakSet()
    _optimizers: list[torch.optim.Optimizer]
    scaler: torch.amp.GradScaler
    _accumulate: int = 1
    _clip_norm: float | None = None
    _clip_value: float | None = None

    @property
    def accumulate(self) -> int:
        """Micro-batches per optimizer step (a whole number >= 1)."""
        return self._accumulate

    @accumulate.setter
    def accumulate(self, value: int) -> None:
        self._accumulate = guards.check_accumulate(value)

    @property
    def clip_grad_norm(self) -> float | None:
        """Clip the unscaled gradients to this total 2-norm; None (also when set to 0): no clipping."""
        return self._clip_norm

    @clip_grad_norm.setter
    def clip_grad_norm(self, value: float | None) -> None:
        self._clip_norm = guards.check_clip(value, "clip_grad_norm")

    @property
    def clip_grad_value(self) -> float | None:
        """Clip each unscaled gradient entry to [-v, v]; None (also when set to 0): no clipping."""
        return self._clip_value

    @clip_grad_value.setter
    def clip_grad_value(self, value: float | None) -> None:
        self._clip_value = guards.check_clip(value, "clip_grad_value")

    def _note_scaler(self) -> None:
        (Wrapped._scaled.add if self.scaler.is_enabled() else Wrapped._scaled.discard)(self)

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        self._note_scaler()  # an unpickled or deep-copied wrapper counts among the wrappers alive

    def _another_scaled(self) -> bool:
        """Another wrapper with a loss scaler is alive (one loss, two wrappers: its backward, our step)."""
        return any(w is not self for w in Wrapped._scaled)

    def _params(self, optimizers: list[torch.optim.Optimizer] | None = None) -> list[torch.Tensor]:
        return [p for o in optimizers or self._optimizers for g in o.param_groups for p in g["params"]]

    def _grads(self) -> list[torch.Tensor]:
        return [p.grad for p in self._params() if p.grad is not None]

    def __repr__(self) -> str:
        names = ", ".join(type(o).__name__ for o in self._optimizers)
        names = names if len(self._optimizers) == 1 else f"[{names}]"
        clip = "".join(
            f", {k}={v:g}"
            for k, v in (("clip_grad_norm", self._clip_norm), ("clip_grad_value", self._clip_value))
            if v is not None
        )
        precision = getattr(self, "precision", None)
        mode = precision.name if precision is not None else "?"
        return f"PrecisionOptimizer({names}, {mode!r}, accumulate={self._accumulate}{clip})"
