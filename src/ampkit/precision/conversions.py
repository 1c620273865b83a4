"""The model conversions a :class:`~ampkit.precision.policy.Precision` hands out.

:class:`PrecisionConversions` is the part of ``Precision`` that changes what it is given:
the conversion behind ``prepare(model)`` (device, dtype, fp32 islands, fp8 layers, int8-qat
tracing, compile), the ``custom_fwd`` / ``custom_bwd`` decorators for custom autograd
Functions, ``compile()``, ``convert()`` and ``cast_inputs()``. ``Precision`` (in
:mod:`.policy`) sets the attributes declared here; the methods read only those.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import torch
from torch import nn

from ..errors import UsageError
from .forward_dtype import set_forward_dtype
from .fp8 import convert_to_fp8
from .keep_fp32 import (
    NORM_TYPES,
    ModuleFilter,
    cast_floating,
    fp32_backward,
    fp32_forward,
    install_fp32_islands,
)
from .modes import ModeSpec
from .qat import convert_int8, prepare_qat
from .tensors import cast_module_, prepare_tensors

F = TypeVar("F", bound=Callable[..., Any])


class PrecisionConversions:
    """Model and input conversions of one precision mode bound to one device (a base of ``Precision``)."""

    spec: ModeSpec
    device: torch.device
    keep_fp32: ModuleFilter
    fp8_emulate: bool
    compile_kwargs: dict[str, Any] | None

    def _prepare(self, model: Any) -> Any:
        """:meth:`~ampkit.precision.policy.Precision.prepare` without its ``keep_fp32`` check: the
        conversion itself (also what ``prepare_tensors`` applies to a module inside a mapping)."""
        if not isinstance(model, nn.Module):
            if self.spec.quantization:
                raise UsageError(
                    f"{self.spec.name}: prepare() needs an nn.Module (it traces the model); got a {type(model).__name__}"
                )
            cast = self.spec.param_dtype if self.spec.param_dtype != torch.float32 else None
            by_key = self.keep_fp32 if self.spec.is_true_low else ModuleFilter()
            return prepare_tensors(model, self.device, cast, by_key, self._prepare)
        model.to(self.device)
        out_dtype = self.spec.param_dtype if self.spec.is_true_low else None
        keep: list[nn.Module] = [m for _, m in self.keep_fp32.select(model)]
        if self.spec.param_dtype != torch.float32:
            cast_module_(model, self.spec.param_dtype)  # complex parameters stay complex
            # tensors the forward creates without a dtype match the weights; the user's do not change
            set_forward_dtype(model, self.spec.param_dtype)
        if self.spec.is_true_low:
            kept = {id(m) for m in keep}
            keep += [m for m in model.modules() if isinstance(m, NORM_TYPES) and id(m) not in kept]
        if keep and (self.spec.is_true_low or self.spec.is_mixed):
            install_fp32_islands(model, keep, out_dtype)
        if self.spec.fp8:
            model = convert_to_fp8(model, self.keep_fp32, emulate=self.fp8_emulate)
        if self.spec.quantization:
            model = prepare_qat(model, self.keep_fp32)  # a traced copy sharing the parameters
        if self.compile_kwargs is not None:
            model = self.compile(model, **self.compile_kwargs)
        return model

    # -- custom autograd Functions -------------------------------------------------------------
    def custom_fwd(self, fwd: F | None = None) -> Any:
        """Decorator for a custom autograd Function's ``forward(ctx, ...)``: it runs in float32 on this
        device in every mode (autocast off inside, every floating input, float64 too, cast to fp32).
        Outputs stay float32 under autocast and otherwise go back to the first floating input's
        dtype (bf16 in bf16-true, float64 in fp64). Bare or called::

            class Rasterise(torch.autograd.Function):
                @staticmethod
                @prec.custom_fwd
                def forward(ctx, means, colors): ...

                @staticmethod
                @prec.custom_bwd
                def backward(ctx, grad): ...
        """
        if fwd is None:
            return self.custom_fwd
        return fp32_forward(fwd, self.device.type)

    def custom_bwd(self, bwd: F | None = None) -> Any:
        """Decorator for the same Function's ``backward``: the autocast state its forward had, floating
        incoming gradients as float32 (input gradients reach autograd, which gives each input its
        own dtype). Bare or called."""
        if bwd is None:
            return self.custom_bwd
        return fp32_backward(bwd, self.device.type)

    def compile(self, model: Any, **torch_compile_kwargs: Any) -> Any:
        """``torch.compile`` for this mode: a prepared ``nn.Module`` is compiled in place (its
        ``state_dict`` keys unchanged) and returned; a function (e.g. forward + ``@fp32`` loss)
        comes back compiled. Where this mode cannot compile here, or the compile fails at the
        first call, one :class:`~ampkit.precision.compile.CompileWarning` says why and it runs
        eager. Keyword arguments go to ``torch.compile`` (``backend``, ``mode``, ``dynamic``, ...).
        """
        from .compile import compile_model

        return compile_model(model, self.spec.name, self.device.type, **torch_compile_kwargs)

    def convert(self, model: nn.Module) -> nn.Module:
        """The deployable form of a prepared, trained ``model``: int8 kernels for int8-qat (CPU only,
        a converted copy); every other mode returns ``model`` itself."""
        return convert_int8(model) if self.spec.quantization else model

    def cast_inputs(self, batch: Any) -> Any:
        """Floating tensors in ``batch`` to the parameter dtype (true-half and fp64 modes; else unchanged)."""
        if self.spec.param_dtype == torch.float32:
            return batch
        return cast_floating(batch, self.spec.param_dtype)
