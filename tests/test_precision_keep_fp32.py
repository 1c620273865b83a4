"""fp32 regions, the fp32 decorator, custom autograd helpers and the module filter syntax."""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ampkit.precision import (
    ModuleFilter,
    Precision,
    PrecisionError,
    fp32,
    fp32_custom_bwd,
    fp32_custom_fwd,
    fp32_region,
)


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


# -- a float32-only custom op inside a model, in every mode (QA s03 / splat_train --precision fp64) ------
def make_op(deco: str, prec: Precision | None) -> tuple[Any, list[tuple[Any, ...]]]:
    """SquarePlus ``(z + sqrt(z^2 + 4)) / 2`` of ``x + bias``: a Function whose kernel takes float32 only."""
    same: Any = lambda f: f  # noqa: E731
    if deco == "prec" and prec is not None:
        fwd, bwd = prec.custom_fwd, prec.custom_bwd
    elif deco == "factory":
        fwd, bwd = fp32_custom_fwd("cpu"), fp32_custom_bwd("cpu")
    else:  # "fp32": the device-free decorator on forward, a plain backward; "none": plain PyTorch
        fwd, bwd = (fp32 if deco == "fp32" else same), same
    seen: list[tuple[Any, ...]] = []

    class SquarePlus(torch.autograd.Function):
        @staticmethod
        @fwd
        def forward(ctx, x, bias):  # type: ignore[no-untyped-def, override]
            seen.append(("fwd", x.dtype, bias.dtype, torch.is_autocast_enabled("cpu")))
            if {x.dtype, bias.dtype} != {torch.float32}:
                raise TypeError(f"kernel takes float32 only, got {x.dtype}, {bias.dtype}")
            z = x + bias
            r = torch.sqrt(z * z + 4)
            ctx.save_for_backward(z, r)
            return (z + r) / 2

        @staticmethod
        @bwd
        def backward(ctx, grad):  # type: ignore[no-untyped-def, override]
            z, r = ctx.saved_tensors
            seen.append(("bwd", grad.dtype))
            gz = grad * (1 + z / r) / 2
            return gz, gz.sum(0)

    return SquarePlus.apply, seen


def reference_op(x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """Plain PyTorch: the undecorated Function on float32 inputs cast by hand, autocast off inside,
    the output back in the input's dtype unless autocast is on (autograd records both casts)."""
    autocast = torch.is_autocast_enabled("cpu")
    with torch.autocast("cpu", enabled=False):
        out = make_op("none", None)[0](x.float(), bias.float())
    return out if autocast else out.to(x.dtype)


class OpNet(nn.Module):
    def __init__(self, op: Any) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.fc1, self.bias, self.fc2 = nn.Linear(4, 8), nn.Parameter(torch.full((8,), 0.1)), nn.Linear(8, 2)
        self.op = op

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.op(self.fc1(x), self.bias))  # bf16 in, bf16 layer after it in bf16-true


def _step(model: nn.Module, prec: Precision) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = torch.randn(6, 4, generator=torch.Generator().manual_seed(1)), torch.ones(6, 2)
    with prec.autocast():
        out = model(prec.cast_inputs(x))
    loss = F.mse_loss(out.float(), y)
    loss.backward()
    return out, loss


OP_MODES = ["fp32", "fp64", "bf16-mixed", "fp16-mixed", "bf16-true", "fp16-true"]


@pytest.mark.parametrize("deco", ["prec", "factory", "fp32"])
@pytest.mark.parametrize("mode", OP_MODES)
def test_custom_op_in_a_model_runs_fp32_and_matches_plain_pytorch(mode: str, deco: str) -> None:
    prec = Precision(mode, "cpu")
    op, seen = make_op(deco, prec)
    model = prec.prepare(OpNet(op))
    out, loss = _step(model, prec)  # bf16-true used to stop here: "mat1 and mat2 must have the same dtype"
    plain = OpNet(reference_op).to(prec.spec.param_dtype)
    plain_out, plain_loss = _step(plain, prec)
    fwd = [s for s in seen if s[0] == "fwd"]
    assert fwd == [("fwd", torch.float32, torch.float32, False)]  # float64 too is cast (fp64 rows)
    assert out.dtype == plain_out.dtype  # bf16-true: bf16; fp64: float64; mixed: autocast's
    assert torch.equal(out, plain_out) and torch.equal(loss, plain_loss)
    for (name, p), q in zip(model.named_parameters(), plain.parameters(), strict=True):
        assert p.grad is not None and p.grad.dtype == p.dtype == q.dtype, name  # each its own dtype
        if deco == "fp32":  # an undecorated backward gets the output's dtype (fp64: float64 math)
            torch.testing.assert_close(p.grad, q.grad, rtol=1e-6, atol=1e-7)
        else:
            assert torch.equal(p.grad, q.grad), name
    # custom_bwd hands the backward float32; a plain one gets the op's output dtype (bf16 in bf16-true)
    expected = prec.spec.param_dtype if deco == "fp32" else torch.float32
    assert [s for s in seen if s[0] == "bwd"] == [("bwd", expected)]


class Calls(nn.Module):
    """A module whose forward calls an ``@fp32`` helper (for the inside-a-forward rows)."""

    def __init__(self, fn: Any) -> None:
        super().__init__()
        self.fn, self.w = fn, nn.Parameter(torch.ones(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x * self.w)


def _fp32_call(where: str, dtype: torch.dtype, inside: list[torch.dtype]) -> torch.Tensor:
    @fp32
    def helper(a: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
        inside.extend([a.dtype, count.dtype])
        return a * 2 + count

    x, count = torch.ones(3, dtype=dtype), torch.arange(3)
    if where == "under autocast":
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return helper(x, count)
    if where.endswith("forward"):  # "bf16-true forward", "fp64 forward"
        prec = Precision(where.split()[0], "cpu")
        return prec.prepare(Calls(lambda a: helper(a, count)))(prec.cast_inputs(x))  # type: ignore[no-any-return]
    if where == "fp64 scope":
        with Precision("fp64", "cpu").scope():
            return helper(x, count)
    return helper(x, count)  # plain code: a mixed mode's loss after its autocast block, fp32 code


FP32_CALLS = [  # (where it is called, first argument's dtype, dtype of the result)
    ("under autocast", torch.bfloat16, torch.float32),
    ("after autocast", torch.bfloat16, torch.float32),  # a bf16-mixed loss outside the block
    ("after autocast", torch.float16, torch.float32),
    ("plain code", torch.float32, torch.float32),
    ("plain code", torch.float64, torch.float32),  # fp64 inputs outside fp64 code: the float32 result
    ("bf16-true forward", torch.float32, torch.bfloat16),  # cast_inputs makes it bf16 first
    ("fp64 forward", torch.float32, torch.float64),
    ("fp64 scope", torch.float64, torch.float64),
]


@pytest.mark.parametrize(("where", "dtype", "result"), FP32_CALLS)
def test_fp32_helper_sees_float32_and_returns_the_callers_dtype(
    where: str, dtype: torch.dtype, result: torch.dtype
) -> None:
    inside: list[torch.dtype] = []
    out = _fp32_call(where, dtype, inside)
    assert inside == [torch.float32, torch.int64]  # every floating input float32, float64 too
    assert out.dtype == result
    torch.testing.assert_close(out.double(), torch.tensor([2.0, 3.0, 4.0], dtype=torch.float64))
