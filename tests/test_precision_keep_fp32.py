"""fp32 regions, the fp32 decorator, custom autograd helpers and the module filter syntax."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ampkit.precision import ModuleFilter, PrecisionError, fp32, fp32_custom_bwd, fp32_custom_fwd, fp32_region


@fp32
def pearson(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    a, b = a - a.mean(), b - b.mean()
    return (a * b).sum() / (a.norm() * b.norm())


def test_fp32_decorator_under_autocast() -> None:
    x = torch.randn(64, 64)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = x @ x
        result = pearson(low, low.T)
        inside = fp32(lambda t: t @ t)(low)
    assert low.dtype == torch.bfloat16
    assert result.dtype == torch.float32 and inside.dtype == torch.float32


def test_fp32_region_switches_autocast_off_and_back() -> None:
    x = torch.randn(8, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        with fp32_region():
            assert (x @ x).dtype == torch.float32
        assert (x @ x).dtype == torch.bfloat16


class Square(torch.autograd.Function):
    @staticmethod
    @fp32_custom_fwd("cpu")
    def forward(ctx, x):  # type: ignore[no-untyped-def, override]
        ctx.save_for_backward(x)
        return x * x

    @staticmethod
    @fp32_custom_bwd("cpu")
    def backward(ctx, grad):  # type: ignore[no-untyped-def, override]
        (x,) = ctx.saved_tensors
        return 2 * x * grad


def test_custom_autograd_function_runs_in_fp32() -> None:
    x = torch.randn(4, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = Square.apply(x.bfloat16())
    assert y.dtype == torch.float32
    y.sum().backward()
    torch.testing.assert_close(x.grad, 2 * x.detach().bfloat16().float(), rtol=1e-2, atol=1e-2)


def test_module_filter_syntax() -> None:
    model = nn.Sequential(nn.Linear(2, 2), nn.Sequential(nn.LayerNorm(2), nn.Linear(2, 2)))
    names = [n for n, _ in ModuleFilter.parse("LayerNorm,re:^0$").select(model)]
    assert names == ["0", "1.0"]
    assert [n for n, _ in ModuleFilter.parse(["torch.nn.Linear"]).select(model)] == ["0", "1.1"]
    assert [n for n, _ in ModuleFilter.parse("re:^1$").select(model)] == ["1"]  # children not repeated
    assert ModuleFilter.parse("LayerNorm,re:^head\\.").spec() == "LayerNorm,re:^head\\."
    assert not ModuleFilter.parse(None)
    with pytest.raises(PrecisionError, match="bad keep-fp32 regex 're:\\('"):
        ModuleFilter.parse("re:(")
