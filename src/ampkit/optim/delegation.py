"""The ``torch.optim.Optimizer`` face of :class:`~ampkit.optim.PrecisionOptimizer`, so a script keeps its lines.

A script that adopts ampkit keeps what it did with its optimizer: ``opt.zero_grad(set_to_none=True)``,
``opt.param_groups[0]["lr"]``, ``opt.add_param_group(...)`` (progressive unfreezing), ``opt.state``,
``opt.defaults``, ``torch.optim.lr_scheduler.StepLR(opt, ...)``, ``opt.register_step_pre_hook(...)``,
``isinstance(opt, torch.optim.Optimizer)``. As Accelerate's ``AcceleratedOptimizer`` does,
:class:`OptimizerFace` subclasses ``torch.optim.Optimizer`` without calling its ``__init__`` (the
wrapper holds no parameters of its own) and hands each of these to the wrapped optimizer: the groups,
state and defaults are the wrapped optimizer's own objects, so a scheduler built on the wrapper sets
the lr the wrapped optimizer steps with. Hooks go to the wrapped optimizer too: they run around its
update, so not on a step that is skipped (as with torch's GradScaler), and receive that optimizer;
torch's hook tables and profiler patch live there alone (the profiler shows ``Optimizer.step#AdamW.step``).
Per step this costs one ``len`` in ``step()``: was a param group added since the last check?
"""

from __future__ import annotations

import collections
from typing import Any, ClassVar

import torch
from torch.utils.hooks import RemovableHandle

from ..errors import UsageError
from ..precision import Precision, PrecisionError
from . import guards
from .half_eps import raise_half_eps
from .rebind import track_step_called


class _Handles(RemovableHandle):
    """The handles of one hook registered on each of several wrapped optimizers, removed together."""

    def __init__(self, handles: list[RemovableHandle]) -> None:
        super().__init__(collections.OrderedDict())
        self.handles = handles

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


class OptimizerFace(torch.optim.Optimizer):
    """What a ``torch.optim.Optimizer`` offers, delegated to the wrapped optimizer(s)."""

    _precision_wrapper: ClassVar[bool] = True  # guards: a wrapper is not wrapped again
    _optimizers: list[torch.optim.Optimizer]
    precision: Precision
    scaler: torch.amp.GradScaler
    _counts: list[int]
    """Param groups per optimizer whose ``eps`` was checked for float16 (added ones: at the next step)."""
    _groups: int = -1
    """The wrapped optimizer's number of checked groups, compared per step; -1 with several optimizers."""

    @property
    def optimizers(self) -> list[torch.optim.Optimizer]:
        """The wrapped optimizers (one, unless a list was given)."""
        return list(self._optimizers)

    @property
    def optimizer(self) -> torch.optim.Optimizer:
        """The wrapped optimizer (with several: :attr:`optimizers`)."""
        return self._single("optimizer")

    def _single(self, what: str) -> torch.optim.Optimizer:
        if len(self._optimizers) > 1:
            raise AttributeError(
                f"this PrecisionOptimizer wraps {len(self._optimizers)} optimizers: use opt.optimizers[i]"
                + ("" if what == "optimizer" else f".{what}")
            )
        return self._optimizers[0]

    @property
    def param_groups(self) -> list[dict[str, Any]]:
        """The wrapped optimizer's ``param_groups`` (the list itself); with several, all their groups."""
        if len(self._optimizers) == 1:
            return self._optimizers[0].param_groups
        return [group for optimizer in self._optimizers for group in optimizer.param_groups]

    @param_groups.setter
    def param_groups(self, groups: list[dict[str, Any]]) -> None:
        self._single("param_groups").param_groups = groups

    @property
    def state(self) -> Any:
        """The wrapped optimizer's per-parameter ``state``; with several, one dict of all of them."""
        if len(self._optimizers) == 1:
            return self._optimizers[0].state
        merged: collections.defaultdict[torch.Tensor, Any] = collections.defaultdict(dict)
        for optimizer in self._optimizers:
            merged.update(optimizer.state)
        return merged

    @state.setter
    def state(self, state: Any) -> None:
        self._single("state").state = state

    @property
    def defaults(self) -> dict[str, Any]:
        """The wrapped optimizer's ``defaults`` (for one optimizer)."""
        return self._single("defaults").defaults

    @defaults.setter
    def defaults(self, defaults: dict[str, Any]) -> None:
        self._single("defaults").defaults = defaults

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """``add_param_group`` of the wrapped optimizer (progressive unfreezing), with the wrapper's checks:
        float16 parameters get a float16-safe ``eps`` (warned); none under a GradScaler (the group is
        not added)."""
        if len(self._optimizers) > 1:
            raise UsageError(
                "PrecisionOptimizer.add_param_group: this wrapper holds several optimizers; valid: "
                "opt.optimizers[i].add_param_group(group), for the optimizer the group belongs to"
            )
        optimizer = self._optimizers[0]
        optimizer.add_param_group(param_group)
        try:
            guards.check_half_params(self.scaler, list(optimizer.param_groups[-1]["params"]))
        except PrecisionError:
            optimizer.param_groups.pop()
            raise
        self._check_groups()

    def _check_groups(self) -> None:
        """Give every float16 param group a float16-safe ``eps`` (:func:`.half_eps.raise_half_eps`)."""
        raise_half_eps(self._optimizers, self.precision.name)
        self._counts = [len(optimizer.param_groups) for optimizer in self._optimizers]
        self._groups = self._counts[0] if len(self._counts) == 1 else -1

    def _check_new_groups(self) -> None:
        """At a step whose first optimizer's group count differs from :attr:`_groups` (always with several):
        groups added since the last check (``opt.optimizer.add_param_group``) get checked."""
        if [len(optimizer.param_groups) for optimizer in self._optimizers] != self._counts:
            self._check_groups()

    # -- hooks: registered on the wrapped optimizer(s) -------------------------------------------
    def _each(self, name: str, *args: Any, **kwargs: Any) -> RemovableHandle:
        handles = [getattr(optimizer, name)(*args, **kwargs) for optimizer in self._optimizers]
        return handles[0] if len(handles) == 1 else _Handles(handles)

    def register_step_pre_hook(self, hook: Any) -> RemovableHandle:
        """Registered on the wrapped optimizer: runs before each update that is applied."""
        return self._each("register_step_pre_hook", hook)

    def register_step_post_hook(self, hook: Any) -> RemovableHandle:
        """Registered on the wrapped optimizer: runs after each update that is applied."""
        return self._each("register_step_post_hook", hook)

    def register_state_dict_pre_hook(self, hook: Any, prepend: bool = False) -> RemovableHandle:
        """Registered on the wrapped optimizer (its part of :meth:`state_dict`)."""
        return self._each("register_state_dict_pre_hook", hook, prepend=prepend)

    def register_state_dict_post_hook(self, hook: Any, prepend: bool = False) -> RemovableHandle:
        """Registered on the wrapped optimizer (its part of :meth:`state_dict`)."""
        return self._each("register_state_dict_post_hook", hook, prepend=prepend)

    def register_load_state_dict_pre_hook(self, hook: Any, prepend: bool = False) -> RemovableHandle:
        """Registered on the wrapped optimizer (its part of :meth:`load_state_dict`)."""
        return self._each("register_load_state_dict_pre_hook", hook, prepend=prepend)

    def register_load_state_dict_post_hook(self, hook: Any, prepend: bool = False) -> RemovableHandle:
        """Registered on the wrapped optimizer (its part of :meth:`load_state_dict`)."""
        return self._each("register_load_state_dict_post_hook", hook, prepend=prepend)

    # -- step(closure) and pickling ---------------------------------------------------------------
    def _closure_step(self, closure: Any) -> Any:
        """``step(closure)`` as torch's first-order optimizers run it: the closure once, with gradients
        enabled (it calls ``opt.backward(loss)``), then the step; returns what the closure returned."""
        with torch.enable_grad():
            loss = closure()
        type(self).step(self)
        return loss

    def __getstate__(self) -> dict[str, Any]:
        """The wrapper's own attributes (torch's ``Optimizer.__getstate__`` would keep only the groups),
        without the ``step`` an LR scheduler patched in (it holds a weak reference)."""
        state = dict(self.__dict__)
        state["_lr_tracked"] = hasattr(state.pop("step", None), "_wrapped_by_lr_sched")
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        state = dict(state)
        tracked = state.pop("_lr_tracked", False)
        self.__dict__.update(state)
        if tracked:  # a scheduler built on the wrapper still sees its step called
            track_step_called(self)
