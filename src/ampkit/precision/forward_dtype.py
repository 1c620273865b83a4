"""The default dtype a prepared module's forward runs with, and only its forward.

True-half modes store a module's weights in bf16/fp16; a tensor its forward creates without a
dtype (``torch.zeros(n)``, ``torch.arange(...).float()`` is not one) must match them. Setting
``torch.set_default_dtype`` for a whole training loop would also make the user's own tensors
16-bit — eval counters, DataLoader targets, densification accumulators — and bf16 cannot count
past 256. So, as Lightning Fabric's ``HalfPrecision`` does, the default dtype is changed only
while the module runs: :func:`set_forward_dtype` installs a forward pre-hook that sets it and a
forward hook (``always_call=True``: it runs when forward raises too) that puts back what was
there. The saved values sit on a per-thread stack, so nested and reentrant calls restore in
order. ``torch.set_default_dtype`` itself is process-wide: while forwards run in several
threads at once (``nn.DataParallel``, a threaded server) the last one to finish restores the
dtype that was there before the first began, and another thread creating tensors meanwhile sees
a module's dtype.

The hooks are plain module hooks (not a patched ``forward``): ``state_dict``, pickling,
``copy.deepcopy`` and torch.compile (which traces them without a graph break) see an ordinary
module.
"""

from __future__ import annotations

import threading
from typing import Any

import torch
from torch import nn

_LOCAL = threading.local()
_RUNNING: list[int] = []
"""One entry per hooked forward running now, in any thread (list append/remove: atomic under the GIL)."""
_BASE: list[torch.dtype] = [torch.float32]
"""The default dtype before the first of them began."""


def _stack() -> list[tuple[int, torch.dtype]]:
    stack: list[tuple[int, torch.dtype]] | None = getattr(_LOCAL, "stack", None)
    if stack is None:
        stack = _LOCAL.stack = []
    return stack


class ForwardDtype:
    """The hook pair of one module: ``dtype`` is the default dtype while its forward runs."""

    def __init__(self, dtype: torch.dtype):
        self.dtype = dtype

    def before(self, module: nn.Module, args: Any) -> None:
        if not _RUNNING:
            _BASE[0] = torch.get_default_dtype()
        _RUNNING.append(id(self))
        _stack().append((id(self), torch.get_default_dtype()))
        torch.set_default_dtype(self.dtype)

    def after(self, module: nn.Module, args: Any, output: Any) -> None:
        stack = _stack()
        # Not ours on top: an earlier pre-hook raised before ``before`` ran (always_call still
        # calls this hook); the value below belongs to an outer call and must stay.
        if not stack or stack[-1][0] != id(self):
            return
        previous = stack.pop()[1]
        _RUNNING.remove(id(self))
        if stack:  # nested in this thread: the outer forward's dtype
            torch.set_default_dtype(previous)
        elif not _RUNNING:  # the last forward anywhere: what was there before them all
            torch.set_default_dtype(_BASE[0])
        # else a forward in another thread still runs: its dtype stays until it ends


def forward_dtype(module: nn.Module) -> torch.dtype | None:
    """The default dtype ``module``'s forward runs with (set by :func:`set_forward_dtype`), or None."""
    hooks = _installed(module)
    return hooks.dtype if hooks is not None else None


def _installed(module: nn.Module) -> ForwardDtype | None:
    for hook in module._forward_pre_hooks.values():
        owner = getattr(hook, "__self__", None)
        if isinstance(owner, ForwardDtype):
            return owner
    return None


def set_forward_dtype(module: nn.Module, dtype: torch.dtype) -> None:
    """Make ``dtype`` the default dtype during ``module``'s forward (only then). Idempotent: a
    second call changes the dtype of the hooks already installed instead of adding a pair."""
    hooks = _installed(module)
    if hooks is not None:
        hooks.dtype = dtype
        return
    hooks = ForwardDtype(dtype)
    # First among the module's pre-hooks, so no other pre-hook can raise before it has pushed.
    module.register_forward_pre_hook(hooks.before, prepend=True)
    module.register_forward_hook(hooks.after, always_call=True)
