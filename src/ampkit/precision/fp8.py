"""fp8-mixed: the matmuls of ``nn.Linear`` layers in float8 with per-tensor dynamic scaling.

The recipe is torchao's "tensorwise" float8 training: in the forward pass input and weight are
scaled so their absolute maximum lands on float8_e4m3fn's largest value (448), cast to e4m3
and multiplied with fp32 accumulation (``torch._scaled_mm`` on GPUs of compute capability
>= 8.9); in the backward pass the output gradient is cast to float8_e5m2 (more range, less
precision) and both gradient matmuls run in fp8 too. Weights stay in fp32 (master weights),
bias and everything that is not an ``nn.Linear`` runs under bf16 autocast.

``emulate=True`` runs the same casts and scales with the matmul itself done in fp32 on the
dequantised fp8 values: the numerics of fp8, on any device, slowly. Layers selected by the
``keep_fp32`` :class:`~ampkit.precision.keep_fp32.ModuleFilter` are not converted (as
torchao's ``module_filter_fn``).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .keep_fp32 import ModuleFilter, fp32_region

E4M3 = torch.float8_e4m3fn
"""Forward dtype (input, weight): 4 exponent bits, 3 mantissa bits, max 448."""
E5M2 = torch.float8_e5m2
"""Gradient dtype: 5 exponent bits, 2 mantissa bits, max 57344."""


def to_fp8(x: torch.Tensor, dtype: torch.dtype = E4M3) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x_fp8, scale)`` with ``x ~= x_fp8 / scale``: per-tensor scaling of amax to the dtype's max."""
    top = torch.finfo(dtype).max
    amax = x.detach().abs().amax().float().clamp(min=1e-12)  # all-zero tensors: any finite scale works
    scale = top / amax
    return (x.float() * scale).clamp(-top, top).to(dtype), scale


def _column_major(t: torch.Tensor) -> torch.Tensor:
    return t.t().contiguous().t()


def _hardware_ok(a: torch.Tensor, b: torch.Tensor) -> bool:
    # cuBLASLt fp8 GEMMs need every dimension divisible by 16; other shapes use the emulated path.
    return a.is_cuda and all(d % 16 == 0 for d in (*a.shape, b.shape[1]))


def fp8_mm(
    a: torch.Tensor,
    a_scale: torch.Tensor,
    b: torch.Tensor,
    b_scale: torch.Tensor,
    out_dtype: torch.dtype,
    *,
    emulate: bool,
) -> torch.Tensor:
    """``(a / a_scale) @ (b / b_scale)`` for fp8 ``a`` (M, K) and ``b`` (K, N), accumulated in fp32.

    Hardware: ``torch._scaled_mm`` (row-major ``a``, column-major ``b``, inverse scales).
    Emulated: the fp8 values multiplied in fp32 and the product rescaled, as the hardware does.
    """
    if not emulate and _hardware_ok(a, b):
        return torch._scaled_mm(
            a.contiguous(),
            _column_major(b),
            scale_a=a_scale.reciprocal(),
            scale_b=b_scale.reciprocal(),
            out_dtype=out_dtype,
        )
    with fp32_region():
        return (a.float() @ b.float()).mul_((a_scale * b_scale).reciprocal()).to(out_dtype)


class _Fp8LinearFn(torch.autograd.Function):
    """``x @ weight.T`` with all three matmuls (forward, grad input, grad weight) in fp8."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, x: torch.Tensor, weight: torch.Tensor, out_dtype: torch.dtype, emulate: bool
    ) -> torch.Tensor:
        x2 = x.reshape(-1, x.shape[-1])
        xq, xs = to_fp8(x2, E4M3)
        wq, ws = to_fp8(weight, E4M3)
        ctx.save_for_backward(xq, xs, wq, ws)  # fp8 copies: a quarter of fp32 activation memory
        ctx.meta = (x.shape, x.dtype, weight.dtype, emulate)
        y = fp8_mm(xq, xs, wq.t(), ws, out_dtype, emulate=emulate)
        return y.reshape(*x.shape[:-1], weight.shape[0])

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[Any, ...]:  # type: ignore[override]
        xq, xs, wq, ws = ctx.saved_tensors
        x_shape, x_dtype, w_dtype, emulate = ctx.meta
        gq, gs = to_fp8(grad.reshape(-1, grad.shape[-1]), E5M2)
        grad_x = grad_w = None
        if ctx.needs_input_grad[0]:
            grad_x = fp8_mm(gq, gs, wq, ws, x_dtype, emulate=emulate).reshape(x_shape)
        if ctx.needs_input_grad[1]:
            grad_w = fp8_mm(gq.t(), gs, xq, xs, torch.float32, emulate=emulate).to(w_dtype)
        return grad_x, grad_w, None, None


class Float8Linear(nn.Linear):
    """An ``nn.Linear`` whose matmuls run in fp8; shares the weight and bias of the layer it replaces."""

    def __init__(self, linear: nn.Linear, *, emulate: bool = False):
        nn.Module.__init__(self)  # not nn.Linear.__init__: no fresh weights, the old Parameters are reused
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.weight = linear.weight
        self.bias = linear.bias
        self.emulate = emulate
        self.train(linear.training)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dev = x.device.type
        out_dtype = torch.get_autocast_dtype(dev) if torch.is_autocast_enabled(dev) else x.dtype
        with fp32_region():  # the casts and scales must not be autocast to bf16
            y = _Fp8LinearFn.apply(x, self.weight, out_dtype, self.emulate)
        return y if self.bias is None else y + self.bias.to(y.dtype)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, fp8=e4m3/e5m2{' emulated' if self.emulate else ''}"


def convert_to_fp8(model: nn.Module, keep: ModuleFilter, *, emulate: bool) -> nn.Module:
    """Replace every plain ``nn.Linear`` outside ``keep``'s selection by :class:`Float8Linear`.

    Returns ``model`` (modified in place), or a new root when ``model`` itself is a Linear.
    """
    skip = {id(m) for _, kept in keep.select(model) for m in kept.modules()}
    if type(model) is nn.Linear:
        return model if id(model) in skip else Float8Linear(model, emulate=emulate)
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is nn.Linear and id(child) not in skip:
                setattr(parent, name, Float8Linear(child, emulate=emulate))
    return model


def count_fp8(model: nn.Module) -> int:
    """How many layers of ``model`` run their matmuls in fp8."""
    return sum(isinstance(m, Float8Linear) for m in model.modules())
