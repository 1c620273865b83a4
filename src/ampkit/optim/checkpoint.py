"""What :class:`~ampkit.optim.PrecisionOptimizer` saves, and what it can resume from.

``opt.state_dict()`` holds the wrapped optimizer's state, the GradScaler's (the loss scale), the
scheduler's and the step counters. ``opt.load_state_dict`` takes that, and also a plain
``torch.optim`` ``state_dict()`` — what a script saved before it adopted ampkit — so that a run ported
mid-project resumes from its last checkpoint: the state goes into the wrapped optimizer, with one
warning that the loss scale, the step counters and the scheduler start afresh. Anything else is one
:class:`~ampkit.errors.UsageError` naming what was given and what is valid.
"""

from __future__ import annotations

from typing import Any

from ..errors import UsageError
from ..warn import warn
from . import several
from .rewrap import Rewrappable

_VALID = (
    "valid: what opt.state_dict() returned (keys optimizer, scaler, scheduler, steps) or a torch optimizer's "
    "state_dict() (keys state, param_groups)"
)


def _is_torch_state(value: Any) -> bool:
    return isinstance(value, dict) and "state" in value and "param_groups" in value


def _kind(value: Any) -> str:
    if isinstance(value, dict):
        return f"a dict with keys {sorted(map(str, value))[:8]}"
    return f"a {type(value).__name__}"


class Checkpointed(Rewrappable):
    """:meth:`state_dict` and :meth:`load_state_dict`; :class:`PrecisionOptimizer` builds on it."""

    steps: int
    skipped_steps: int
    _micro: int

    def state_dict(self) -> dict[str, Any]:
        """Optimizer, scaler and scheduler state plus step counters (lists where lists were given)."""
        return {
            "optimizer": several.state_of(self._optimizers if len(self._optimizers) > 1 else self.optimizer),
            "scaler": self.scaler.state_dict(),
            "scheduler": several.state_of(self.scheduler),
            "steps": self.steps,
            "skipped_steps": self.skipped_steps,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` saved (scaler included), or a plain torch optimizer
        ``state_dict()`` (a list of them for several optimizers) into the wrapped optimizer(s)."""
        plain = _is_torch_state(state) or (
            isinstance(state, list) and bool(state) and all(map(_is_torch_state, state))
        )
        if plain:
            several.load_into(self._optimizers, state, "optimizer")
            warn(
                "PrecisionOptimizer.load_state_dict: a plain torch optimizer state_dict (saved before "
                "PrecisionOptimizer?) was loaded into the wrapped optimizer; the loss scale, the step "
                "counters and the scheduler keep their current state; save opt.state_dict() from now on"
            )
        elif not isinstance(state, dict) or "optimizer" not in state:
            raise UsageError(f"PrecisionOptimizer.load_state_dict: got {_kind(state)}; {_VALID}")
        else:
            several.load_into(self._optimizers, state["optimizer"], "optimizer")
            if state.get("scaler"):
                self.scaler.load_state_dict(state["scaler"])
            if self.scheduler is not None and state.get("scheduler") is not None:
                several.load_into(self.scheduler, state["scheduler"], "scheduler")
            self.steps = int(state.get("steps", 0))
            self.skipped_steps = int(state.get("skipped_steps", 0))
        self._micro = 0
        self._unscaled = False
        self._check_groups()  # a loaded state carries each group's eps: float16 groups get a safe one
