"""``Precision.prepare`` for parameters that do not live in an ``nn.Module``.

Gaussian-splatting models and many research scripts keep their ``nn.Parameter`` s on a plain
object (``gaussians._xyz``, ``gaussians._opacity``, ...). :func:`prepare_tensors` accepts an
iterable of tensors or a mapping name -> tensor (``vars(gaussians)``: values that are neither
tensors nor modules, such as ints, functions or an optimizer, are left alone) and moves and
casts them *in place* — ``t.data = t.data.to(...)``, gradients too — so every optimizer,
list and attribute holding them keeps seeing the same tensor objects.

Only trainable tensors (``nn.Parameter`` s and tensors with ``requires_grad``) change dtype; other
tensors (densification accumulators such as ``xyz_gradient_accum`` and ``denom``, masks, counts)
only move to the device: a bf16 counter stops counting at 256.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import torch
from torch import nn

from ..errors import UsageError
from .keep_fp32 import ModuleFilter

ACCEPTED = (
    "an nn.Module, an iterable of parameters/tensors, or a mapping name -> parameter/tensor (e.g. vars(obj))"
)
_VALID = f"valid: {ACCEPTED}"


def trainable(tensor: torch.Tensor) -> bool:
    """A parameter (``nn.Parameter`` or ``requires_grad``): what a precision's dtype applies to."""
    return isinstance(tensor, nn.Parameter) or tensor.requires_grad


#: The complex dtype whose parts are a real dtype; bf16 and fp16 have none that torch computes with.
COMPLEX_OF: dict[torch.dtype, torch.dtype] = {torch.float64: torch.complex128, torch.float32: torch.complex64}


def cast_dtype(tensor: torch.Tensor, dtype: torch.dtype) -> torch.dtype:
    """The dtype a precision with parameter dtype ``dtype`` gives ``tensor``: ``dtype`` for a real
    floating tensor; for a complex one the complex dtype made of ``dtype`` (complex128 under
    fp64), or its own where there is none (no complex bf16: never cast to a real dtype, which
    would drop the imaginary part); integer and bool tensors keep theirs."""
    if tensor.is_floating_point():
        return dtype
    if tensor.is_complex():
        return COMPLEX_OF.get(dtype, tensor.dtype)
    return tensor.dtype


def cast_module_(module: nn.Module, dtype: torch.dtype) -> nn.Module:
    """``module.to(dtype)`` that keeps complex parameters and buffers complex (:func:`cast_dtype`);
    parameters stay the same objects and their ``.grad`` follows."""
    return module._apply(lambda t: t.to(cast_dtype(t, dtype)))


def move_tensor_(tensor: torch.Tensor, device: torch.device, dtype: torch.dtype | None) -> None:
    """Move ``tensor`` (and its ``.grad``) to ``device`` and, when trainable and ``dtype`` is given,
    to :func:`cast_dtype` — in place: the tensor object stays the same."""
    cast = dtype is not None and trainable(tensor)
    target = cast_dtype(tensor, dtype) if cast and dtype is not None else tensor.dtype
    if tensor.device != device or tensor.dtype != target:
        with torch.no_grad():
            tensor.data = tensor.data.to(device=device, dtype=target)
    grad = tensor.grad
    if grad is not None and (grad.device != tensor.device or grad.dtype != tensor.dtype):
        grad.data = grad.data.to(device=tensor.device, dtype=tensor.dtype)


def _kind(obj: object) -> str:
    return type(obj).__name__


def prepare_tensors(
    obj: Any,
    device: torch.device,
    dtype: torch.dtype | None,
    keep: ModuleFilter,
    prepare_module: Callable[[nn.Module], nn.Module],
) -> Any:
    """Move/cast the tensors of ``obj`` (a tensor, an iterable of tensors, or a mapping whose tensor
    values are cast unless ``keep.matches_key(key)``; module values go through ``prepare_module``).
    Returns ``obj`` (an iterator, which this consumes, comes back as the list of its items, so
    ``AdamW(prec.prepare(model.parameters()))`` works). Anything else is a one-line
    :class:`~ampkit.errors.UsageError`."""
    if isinstance(obj, torch.Tensor):
        move_tensor_(obj, device, dtype)
        return obj
    if isinstance(obj, Mapping):
        found = 0
        for key, value in obj.items():
            if isinstance(value, torch.Tensor):
                move_tensor_(value, device, None if keep.matches_key(str(key)) else dtype)
                found += 1
            elif isinstance(value, nn.Module):
                prepare_module(value)
                found += 1
        if not found:
            raise UsageError(f"prepare(): the {_kind(obj)} holds no tensors or modules; {_VALID}")
        return obj
    if isinstance(obj, (str, bytes)) or not isinstance(obj, Iterable):
        raise UsageError(f"prepare(): unsupported type {_kind(obj)!r}; {_VALID}")
    items = list(obj)
    for i, item in enumerate(items):
        if not isinstance(item, (torch.Tensor, nn.Module)):
            raise UsageError(f"prepare(): item {i} of the {_kind(obj)} is of type {_kind(item)!r}; {_VALID}")
    for item in items:
        if isinstance(item, nn.Module):
            prepare_module(item)
        else:
            move_tensor_(item, device, dtype)
    return items if isinstance(obj, Iterator) else obj


def floating_dtypes(obj: Any) -> list[torch.dtype]:
    """dtypes of the floating tensors ``prepare`` would touch in ``obj`` (for ``describe``)."""
    if isinstance(obj, nn.Module):
        return [p.dtype for p in obj.parameters()]
    if isinstance(obj, torch.Tensor):
        values: Iterable[Any] = [obj]
    elif isinstance(obj, Iterator):
        return []  # reading it would consume it
    elif isinstance(obj, Mapping):
        values = obj.values()
    elif isinstance(obj, Iterable) and not isinstance(obj, (str, bytes)):
        values = obj
    else:
        return []
    out: list[torch.dtype] = []
    for value in values:
        if isinstance(value, nn.Module):
            out += [p.dtype for p in value.parameters()]
        elif isinstance(value, torch.Tensor) and value.is_floating_point() and trainable(value):
            out.append(value.dtype)
    return out
