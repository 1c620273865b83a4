"""What :class:`~ampkit.optim.PrecisionOptimizer` accepts, checked before it touches anything.

A wrong argument is a one-line :class:`~ampkit.errors.UsageError` naming what was passed and what
is valid: an ``nn.Module`` or a generator of parameters where an optimizer belongs, a precision
that is neither a :class:`~ampkit.precision.Precision` nor a mode name, ``accumulate=2.5``, a
negative or non-finite clip threshold. A clip threshold of 0 means "no clipping", as None does
(the convention of configs and of Hugging Face's ``max_grad_norm``).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from ..errors import UsageError
from ..precision import Precision, PrecisionError

_OPTIMIZER = "a torch.optim optimizer, e.g. torch.optim.AdamW(model.parameters()), or a list of them"


def _kind(value: Any) -> str:
    if isinstance(value, nn.Module):
        return f"an nn.Module ({type(value).__name__})"
    if isinstance(value, Precision):
        return f"a Precision ({value.name})"
    if isinstance(value, str):
        return f"the string {value!r}"
    return f"a {type(value).__name__}"


def is_optimizer(value: Any) -> bool:
    """A ``torch.optim.Optimizer``, or an object that quacks like one (``param_groups``, ``step``)."""
    if isinstance(value, torch.optim.Optimizer):
        return True
    return isinstance(getattr(value, "param_groups", None), list) and callable(getattr(value, "step", None))


def as_optimizers(value: Any, count: int | None = None) -> list[torch.optim.Optimizer]:
    """``value`` (one optimizer or a non-empty list/tuple of them) as a list; no parameter in two of
    them; ``count``: as many as a wrapper being rebound holds."""
    optimizers = _optimizers(value)
    if count is not None and len(optimizers) != count:
        raise UsageError(
            f"PrecisionOptimizer.rebind: {len(optimizers)} optimizer(s) for a wrapper of {count}; valid: "
            "as many as it wraps, in the same order"
        )
    return optimizers


def _optimizers(value: Any) -> list[torch.optim.Optimizer]:
    items = value if isinstance(value, Sequence) and not isinstance(value, str) else [value]
    if any(getattr(item, "_precision_wrapper", False) is True for item in items):
        raise UsageError(
            "PrecisionOptimizer: optimizer is already a PrecisionOptimizer (a torch.optim.Optimizer too); "
            "valid: the torch optimizer it wraps (opt.optimizer), wrapped once"
        )
    if is_optimizer(value):
        return [value]
    if isinstance(value, Sequence) and not isinstance(value, str) and value and all(map(is_optimizer, value)):
        optimizers = list(value)
        _check_disjoint(optimizers)
        return optimizers
    hint = ""
    if isinstance(value, nn.Module):
        hint = "; build the optimizer over its parameters (the model itself goes to model=)"
    elif isinstance(value, Precision):
        hint = "; the optimizer comes first: PrecisionOptimizer(optimizer, precision)"
    elif isinstance(value, Sequence) and not isinstance(value, str) and value:
        bad = next(v for v in value if not is_optimizer(v))
        raise UsageError(f"PrecisionOptimizer: the list holds {_kind(bad)}; valid: {_OPTIMIZER}")
    raise UsageError(f"PrecisionOptimizer: optimizer is {_kind(value)}{hint}; valid: {_OPTIMIZER}")


def _check_disjoint(optimizers: list[torch.optim.Optimizer]) -> None:
    seen: dict[int, int] = {}
    for i, optimizer in enumerate(optimizers):
        for group in optimizer.param_groups:
            for param in group["params"]:
                j = seen.setdefault(id(param), i)
                if j != i:
                    raise UsageError(
                        f"PrecisionOptimizer: optimizers {j} and {i} share a parameter of shape "
                        f"{tuple(param.shape)} (it would be unscaled and stepped twice); valid: "
                        "optimizers over disjoint parameters"
                    )


def as_precision(value: Any, optimizers: list[torch.optim.Optimizer]) -> Precision:
    """A :class:`Precision`, or a mode name resolved as ``Precision(name, device of the parameters)``."""
    if isinstance(value, Precision):
        return value
    if isinstance(value, str):
        params = [p for o in optimizers for g in o.param_groups for p in g["params"]]
        return Precision(value, params[0].device if params else "cpu")
    raise UsageError(
        f"PrecisionOptimizer: precision is {_kind(value)}; valid: a Precision, e.g. "
        "Precision('bf16-mixed', 'cuda'), or a mode name such as 'bf16-mixed'"
    )


def check_accumulate(value: Any) -> int:
    """``accumulate`` as a whole number >= 1."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise UsageError(f"PrecisionOptimizer: accumulate={value!r}; valid: a whole number >= 1")
    return int(value)


def check_clip(value: Any, name: str) -> float | None:
    """A clip threshold: a finite number > 0, or None / 0 for no clipping (returned as None)."""
    if value is None:
        return None
    number = float(value) if isinstance(value, numbers.Real) and not isinstance(value, bool) else math.nan
    if not math.isfinite(number) or number < 0:
        raise UsageError(f"PrecisionOptimizer: {name}={value!r}; valid: > 0, or 0/None for no clipping")
    return number if number > 0 else None


def not_ready(call: str, micro: int, accumulate: int) -> str:
    """The message for ``unscale_()`` / ``step()`` in the middle of an accumulation."""
    return (
        f"opt.{call}() after {micro} of {accumulate} micro-batches: the gradients are complete once "
        f"opt.ready; call it after the last opt.backward() (or opt.zero_grad() to drop a partial accumulation)"
    )


def half_port(call: str) -> str:
    """The warning for gradients made without any ``opt.backward()`` (``loss.backward()`` left in place)."""
    return (
        f"opt.{call}: parameters have gradients but opt.backward() was never called (loss.backward() left "
        "in place?): such gradients are not loss-scaled and do not count as micro-batches, so opt.ready "
        "stays False; call opt.backward(loss) instead"
    )


def unscaled_backward(another: bool) -> str:
    """The message for a step whose gradients were not made by this wrapper's scaled backward;
    ``another``: another wrapper with a loss scaler is alive (one loss, two wrappers)."""
    message = (
        "optimizer step without a scaled backward: loss.backward() was called directly, so the loss was "
        "never scaled; call opt.backward(loss) instead"
    )
    if another:
        message += (
            " (or another PrecisionOptimizer's backward() made these gradients: for one loss and several "
            "optimizers wrap them in one, PrecisionOptimizer([opt_a, opt_b], precision))"
        )
    return message


def check_half_params(scaler: torch.amp.GradScaler, params: list[torch.Tensor]) -> None:
    """No trainable float16 parameter under an enabled GradScaler (it cannot unscale fp16 gradients)."""
    if not scaler.is_enabled():
        return
    half = [p for p in params if p.requires_grad and p.dtype == torch.float16]
    if half:
        raise PrecisionError(
            f"{len(half)} trainable parameters are float16 under a GradScaler, which cannot unscale fp16 "
            "gradients ('Attempting to unscale FP16 gradients'): keep fp32 weights (fp16-mixed: "
            "precision.prepare(model) leaves them fp32) or use fp16-true, which runs without a scaler"
        )
