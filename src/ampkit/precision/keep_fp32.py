"""Keep chosen modules and functions in float32 under any low-precision mode.

One override syntax, :class:`ModuleFilter` (defined in :mod:`.module_filter`, re-exported
here), names modules by type (``"LayerNorm"``) or by qualified-name regex (``"re:^head\\."``);
true-half conversion, FSDP2 policies and fp8 filters all read it. Kept modules become *fp32
islands*: a forward pre-hook casts floating inputs to fp32, their forward runs with autocast
off, and a forward hook hands the output back in the surrounding dtype.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, nullcontext
from typing import Any, TypeVar

import torch
from torch import nn
from torch.utils._pytree import tree_leaves, tree_map

from .aliases import PrecisionError
from .module_filter import ModuleFilter as ModuleFilter

#: Normalisation layers: kept in fp32 by true-half modes (their statistics need the range and bits).
NORM_TYPES: tuple[type[nn.Module], ...] = (
    nn.modules.batchnorm._NormBase,
    nn.LayerNorm,
    nn.GroupNorm,
    nn.LocalResponseNorm,
    *((nn.RMSNorm,) if hasattr(nn, "RMSNorm") else ()),
)

_AUTOCAST_DEVICES = ("cpu", "cuda")


def cast_floating(tree: Any, dtype: torch.dtype) -> Any:
    """Every real floating-point tensor in ``tree`` (nested tuples, lists, dicts) as ``dtype``;
    other values (integer and complex tensors, non-tensors) as they are."""

    def cast(x: Any) -> Any:
        if isinstance(x, torch.Tensor) and x.is_floating_point() and x.dtype != dtype:
            return x.to(dtype)
        return x

    return tree_map(cast, tree)


def first_floating_dtype(tree: Any) -> torch.dtype | None:
    """dtype of the first real floating-point tensor in ``tree``, or None."""
    for leaf in tree_leaves(tree):
        if isinstance(leaf, torch.Tensor) and leaf.is_floating_point():
            return leaf.dtype  # type: ignore[no-any-return]
    return None


def autocast_on(devices: Iterable[str]) -> bool:
    """Whether autocast is enabled now on any of ``devices``."""
    return any(torch.is_autocast_enabled(d) for d in devices)


def call_fp32(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], autocast: bool) -> Any:
    """``fn(*args, **kwargs)`` with every floating tensor argument (float64 too) cast to float32,
    its floating outputs handed back in the dtype the caller computes in.

    That is float32 under ``autocast`` (its state at the call: mixed modes), as with
    ``torch.amp.custom_fwd(cast_inputs=torch.float32)``: autocast casts them where they go next.
    Otherwise it is the first floating argument's dtype when that is torch's default dtype — a
    true-half or fp64 model's forward, where ``prepare`` makes the parameter dtype the default,
    so a bf16 layer after a custom op gets bf16 — and float32 for other code (a mixed mode's
    loss after its autocast block, a loss on a bf16-true model's output)."""
    back = None if autocast else first_floating_dtype((args, kwargs))
    out = fn(*cast_floating(args, torch.float32), **cast_floating(kwargs, torch.float32))
    if back is None or back == torch.float32 or back != torch.get_default_dtype():
        return out
    return cast_floating(out, back)


class _Fp32Island:
    """Hooks that cast a kept module's floating inputs to fp32 and its output to ``out_dtype``."""

    def __init__(self, out_dtype: torch.dtype | None):
        self.out_dtype = out_dtype

    def before(self, module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        return cast_floating(args, torch.float32), cast_floating(kwargs, torch.float32)

    def after(self, module: nn.Module, args: Any, kwargs: Any, output: Any) -> Any:
        return output if self.out_dtype is None else cast_floating(output, self.out_dtype)


class _AutocastOffForward:
    """A kept module's ``forward``: its class's forward run with autocast off.

    A wrapper, not a pre/post hook pair holding an autocast context open from one hook to the
    other: torch.compile (dynamo) traces a ``with`` block inside one call without a graph break,
    and fails on the pair. It holds the module and its class's function (not a bound method), so
    ``copy.deepcopy`` and pickling rebind it to the copy.
    """

    def __init__(self, module: nn.Module):
        self.module, self.func = module, type(module).forward

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        with fp32_region():
            return self.func(self.module, *args, **kwargs)


def install_fp32_islands(
    model: nn.Module, modules: Iterable[nn.Module], out_dtype: torch.dtype | None
) -> int:
    """Convert ``modules`` to fp32 and make them fp32 islands; returns how many were installed."""
    count = 0
    for module in modules:
        module.float()
        island = _Fp32Island(out_dtype)
        module.register_forward_pre_hook(island.before, with_kwargs=True)
        module.register_forward_hook(island.after, with_kwargs=True, always_call=True)
        module.forward = _AutocastOffForward(module)  # type: ignore[method-assign]
        count += 1
    return count


@contextmanager
def fp32_region() -> Iterator[None]:
    """Run the enclosed code with autocast off on every device (inputs must be cast by the caller).

    Plain ``with`` blocks (no ExitStack): torch.compile traces them without a graph break."""
    cpu, cuda = (
        torch.autocast(d, enabled=False) if torch.is_autocast_enabled(d) else nullcontext()
        for d in _AUTOCAST_DEVICES
    )
    with cpu, cuda:
        yield


F = TypeVar("F", bound=Callable[..., Any])


def fp32(fn: F) -> F:
    """Decorator: run ``fn`` in float32 in every mode — autocast off inside, every floating tensor
    argument (float64 too) cast to float32 — for losses such as SSIM or Pearson correlation whose
    sums and divisions lose too much in 16 bits, and for float32-only kernels.

    Outputs come back in the dtype the caller computes in (:func:`call_fp32`): float32 under
    autocast and in float32 code, bf16/fp16/float64 inside a true-half or fp64 model's forward.
    On a custom autograd Function's ``forward``, an undecorated ``backward`` receives gradients
    in the output's dtype; decorate it with ``@prec.custom_bwd`` (or :func:`fp32_custom_bwd`)
    to receive them as float32.
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        autocast = autocast_on(_AUTOCAST_DEVICES)  # read before fp32_region switches it off
        with fp32_region():
            return call_fp32(fn, args, kwargs, autocast)

    return wrapper  # type: ignore[return-value]


def _has_autocast(device_type: str) -> bool:
    try:
        return torch.amp.is_autocast_available(device_type)
    except RuntimeError:  # not a device type at all
        return False


def _device_type_of(device_type: Any, decorator: str) -> str:
    """The device type a custom_fwd/custom_bwd decorator was given, or a one-line error now."""
    if device_type is None or callable(device_type):
        used = f"@{decorator}" if callable(device_type) else f"@{decorator}()"
        raise PrecisionError(
            f"{used} needs the device the Function runs on: write @{decorator}(device_type='cuda'|'cpu'|...) "
            "or use @prec.custom_fwd / @prec.custom_bwd of your Precision (bound to its device)"
        )
    if isinstance(device_type, torch.device):
        return device_type.type
    if not isinstance(device_type, str) or not _has_autocast(device_type):
        raise PrecisionError(
            f"@{decorator}(device_type={device_type!r}): not a device type with autocast; valid: cpu, cuda, "
            "xpu, mps, ... (torch.device(...).type)"
        )
    return device_type


def fp32_forward(fwd: F, device_type: str) -> F:
    """``fwd`` (a custom autograd Function's ``forward(ctx, ...)``) run in float32 in every mode:
    autocast off inside and every floating tensor input (float64 too) cast to float32, as
    ``torch.amp.custom_fwd(cast_inputs=torch.float32)`` does under autocast. Outputs in the
    caller's dtype (:func:`call_fp32`: a bf16 layer after the Function in a bf16-true model's
    forward gets bf16); autograd hands each input a gradient of its own dtype."""
    wrapped = torch.amp.custom_fwd(fwd, device_type=device_type, cast_inputs=torch.float32)

    @functools.wraps(fwd)
    def forward(ctx: Any, *args: Any, **kwargs: Any) -> Any:
        return call_fp32(functools.partial(wrapped, ctx), args, kwargs, autocast_on((device_type,)))

    return forward  # type: ignore[return-value]


def fp32_backward(bwd: F, device_type: str) -> F:
    """``bwd`` run with the autocast state its forward had (``torch.amp.custom_bwd``) and its
    floating incoming gradients as float32 (they come in the outputs' dtype, bf16 in bf16-true)."""
    wrapped = torch.amp.custom_bwd(bwd, device_type=device_type)

    @functools.wraps(bwd)
    def backward(ctx: Any, *grads: Any) -> Any:
        return wrapped(ctx, *cast_floating(grads, torch.float32))

    return backward  # type: ignore[return-value]


def fp32_custom_fwd(device_type: str | torch.device | None = None) -> Callable[[F], F]:
    """Decorator factory: run a custom autograd Function's forward in fp32 on ``device_type``
    (pair with :func:`fp32_custom_bwd`): autocast is off inside and floating inputs arrive as fp32.

    ``device_type`` is required (it is never assumed to be cuda): ``@fp32_custom_fwd("cuda")``;
    ``@prec.custom_fwd`` of a :class:`~ampkit.precision.Precision` knows its device. Without it,
    or used bare as ``@fp32_custom_fwd``, this raises :class:`PrecisionError` at decoration time.
    """
    kind = _device_type_of(device_type, "fp32_custom_fwd")
    return functools.partial(fp32_forward, device_type=kind)  # type: ignore[return-value]


def fp32_custom_bwd(device_type: str | torch.device | None = None) -> Callable[[F], F]:
    """``torch.amp.custom_bwd`` for the same Function: backward runs with forward's autocast state.
    ``device_type`` is required, as for :func:`fp32_custom_fwd`."""
    kind = _device_type_of(device_type, "fp32_custom_bwd")
    return functools.partial(fp32_backward, device_type=kind)  # type: ignore[return-value]
