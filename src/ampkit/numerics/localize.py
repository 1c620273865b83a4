"""Where did the NaN come from? Non-finite events and the module that produced them first.

Two levels. The cheap one (always on in the engine) looks only at what a step already
computes: the loss and the unscaled gradient norm. ``--detect-anomaly`` adds hooks to every
module: a forward hook checks each output, a tensor hook on each output checks the gradient
flowing back into it, and a post-accumulate hook on each parameter checks its gradient. The
first non-finite tensor in execution order is the one reported (forward before backward; in
backward, the hook that fires first), with the module's qualified name.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn
from torch.utils._pytree import tree_leaves


class NonFiniteError(RuntimeError):
    """``--on-nonfinite stop``: the run ended at a non-finite step; the message is one line."""

    def __init__(self, event: NonFiniteEvent):
        super().__init__(event.describe())
        self.event = event


@dataclass(frozen=True)
class NonFiniteEvent:
    """One step whose loss or gradients were inf/NaN."""

    step: int
    """1-based optimizer step."""
    mode: str
    """Precision mode the step ran in."""
    where: str
    """``forward`` or ``backward`` (localised by hooks), ``loss`` or ``gradients`` (cheap checks)."""
    module: str | None
    """Qualified name of the first module whose output or gradient went non-finite (hooks only);
    ``"<model>"`` for the root module."""
    kind: str
    """``nan`` or ``inf``."""
    loss_scale: float | None = None
    """Loss scale of the step (fp16 scaler), which explains gradient overflow."""

    def describe(self) -> str:
        """One line: step, mode, what and where."""
        place = f" in module {self.module!r}" if self.module is not None else ""
        scale = f" (loss scale {self.loss_scale:g})" if self.loss_scale is not None else ""
        return f"step {self.step}: {self.kind} in {self.where}{place} under {self.mode}{scale}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


def tensor_kind(tensor: torch.Tensor) -> str | None:
    """``"nan"``, ``"inf"`` or None for a finite (or non-floating) tensor."""
    if not (tensor.is_floating_point() or tensor.is_complex()) or tensor.numel() == 0:
        return None
    if bool(torch.isfinite(tensor).all()):
        return None
    return "nan" if bool(torch.isnan(tensor).any()) else "inf"


def value_kind(value: float | None) -> str | None:
    """The same for a Python float (None counts as finite)."""
    if value is None or math.isfinite(value):
        return None
    return "nan" if math.isnan(value) else "inf"


class AnomalyHooks:
    """Per-module hooks that remember the first non-finite output or gradient since :meth:`take`.

    >>> hooks = AnomalyHooks(model)       # installed at once
    >>> ...one training step...
    >>> hooks.take()                      # ("forward", "block.3", "nan") or None; resets
    >>> hooks.remove()
    """

    def __init__(self, model: nn.Module):
        self._first: tuple[str, str, str] | None = None
        self._handles: list[Any] = []
        for name, module in model.named_modules():
            label = name or "<model>"
            self._handles.append(module.register_forward_hook(self._forward_hook(label)))
            for param in module.parameters(recurse=False):
                if param.requires_grad:
                    self._handles.append(param.register_post_accumulate_grad_hook(self._param_hook(label)))

    def _note(self, where: str, module: str, kind: str | None) -> None:
        if kind is not None and self._first is None:
            self._first = (where, module, kind)

    def _forward_hook(self, label: str) -> Any:
        def hook(module: nn.Module, args: Any, output: Any) -> None:
            if not torch.is_grad_enabled():
                return  # evaluation passes are not training steps
            for leaf in tree_leaves(output):
                if not isinstance(leaf, torch.Tensor):
                    continue
                self._note("forward", label, tensor_kind(leaf))
                if leaf.requires_grad:
                    # The gradient flowing back into this output: fires in backward execution order.
                    leaf.register_hook(self._grad_hook(label))

        return hook

    def _grad_hook(self, label: str) -> Any:
        def hook(grad: torch.Tensor) -> None:
            self._note("backward", label, tensor_kind(grad))

        return hook

    def _param_hook(self, label: str) -> Any:
        def hook(param: torch.Tensor) -> None:
            if param.grad is not None:
                self._note("backward", label, tensor_kind(param.grad))

        return hook

    def take(self) -> tuple[str, str, str] | None:
        """The first ``(where, module, kind)`` seen since the last call, then forget it."""
        first, self._first = self._first, None
        return first

    def remove(self) -> None:
        """Uninstall every hook."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def __enter__(self) -> AnomalyHooks:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()


def localize_step(
    step: int,
    mode: str,
    loss: float,
    grad_norm: float | None,
    applied: bool,
    loss_scale: float | None = None,
    hooks: AnomalyHooks | None = None,
) -> NonFiniteEvent | None:
    """The event for one finished step, or None when it was finite and applied.

    The cheap checks decide whether there is an event (an inf in a mask that never reaches the
    loss is not one); hook findings, when present, say where it started. A skipped step with a
    finite norm (the scaler saw inf in the *scaled* gradients) is ``inf`` in ``gradients``.
    """
    found = hooks.take() if hooks is not None else None
    cheap_kind = value_kind(loss) or value_kind(grad_norm)
    if cheap_kind is None and applied:
        return None
    if found is not None:
        where, module, kind = found
        return NonFiniteEvent(step, mode, where, module, kind, loss_scale)
    where = "loss" if value_kind(loss) else "gradients"
    return NonFiniteEvent(step, mode, where, None, cheap_kind or "inf", loss_scale)
