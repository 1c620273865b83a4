"""prepare() on what research scripts hold: plain objects, generators, keep_fp32 typos, fp64 Functions."""

from __future__ import annotations

import warnings
from typing import Any

import pytest
import torch
from torch import nn

from ampkit import Precision
from ampkit.precision import fp32
from ampkit.precision.policy import PrecisionWarning


class Gaussians:
    """A 3DGS-style model: parameters and densification accumulators as plain attributes."""

    def __init__(self, n: int = 5):
        self._xyz = nn.Parameter(torch.randn(n, 3))
        self._opacity = nn.Parameter(torch.randn(n, 1))
        self.xyz_gradient_accum = torch.zeros(n, 1)
        self.denom = torch.zeros(n, 1)
        self.max_radii2D = torch.zeros(n)
        self.active_sh_degree = 0


def _warnings(fn: Any) -> list[str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fn()
    return [str(w.message) for w in caught if issubclass(w.category, PrecisionWarning)]


@pytest.mark.parametrize("mode", ["bf16-true", "fp16-true"])
def test_only_parameters_change_dtype_accumulators_keep_counting(mode: str) -> None:
    g = Gaussians()
    prec = Precision(mode, "cpu", keep_fp32="re:^_xyz$")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # fp16 emulated on this CPU
        prec.prepare(vars(g))
    assert g._xyz.dtype == torch.float32 and g._opacity.dtype == prec.spec.param_dtype
    assert g.xyz_gradient_accum.dtype == g.denom.dtype == g.max_radii2D.dtype == torch.float32
    for _ in range(1000):  # a 16-bit counter would stop at 256 (bf16) or 2048 (fp16)
        g.denom += 1
    assert float(g.denom[0]) == 1000.0
    name = str(prec.spec.param_dtype).removeprefix("torch.")
    assert f"params={name}+float32 " in prec.describe(vars(g))  # _opacity and _xyz; no accumulator


def test_a_generator_of_parameters_comes_back_as_a_list_an_optimizer_can_take() -> None:
    torch.manual_seed(0)
    ref, model = nn.Linear(4, 3), nn.Linear(4, 3)
    model.load_state_dict(ref.state_dict())
    prec = Precision("fp32", "cpu")
    opt = torch.optim.SGD(prec.prepare(model.parameters()), lr=0.1)  # used to be an empty list
    ref_opt = torch.optim.SGD(ref.parameters(), lr=0.1)
    x = torch.randn(8, 4)
    for m, o in ((model, opt), (ref, ref_opt)):
        m(x).square().mean().backward()
        o.step()
    assert torch.equal(model.weight, ref.weight) and not torch.equal(model.weight, nn.Linear(4, 3).weight)
    bf = nn.Linear(4, 3)
    params = Precision("bf16-true", "cpu").prepare(p for p in bf.parameters())
    assert isinstance(params, list) and [p.dtype for p in params] == [torch.bfloat16] * 2


class Clip(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.proj, self.norm = nn.Linear(4, 4), nn.LayerNorm(4)
        self.logit_scale = nn.Parameter(torch.ones(()))


@pytest.mark.parametrize(
    ("mode", "keep", "make", "named"),
    [
        ("bf16-true", "LayerNrom", Clip, ["'LayerNrom'"]),  # a typo
        ("bf16-mixed", "logit_scale", Clip, ["'logit_scale'"]),  # a parameter name, not a module
        ("bf16-true", "re:^heads?\\.,LayerNorm", Clip, ["'re:^heads?\\\\.'"]),  # one of two matches
        ("bf16-true", "re:^_xyz$,_scaling", lambda: vars(Gaussians()), ["'_scaling'"]),  # mapping keys
        ("bf16-true", "LayerNorm", lambda: list(Clip().parameters()), ["'LayerNorm'", "bare tensors"]),
    ],
    ids=["typo", "param-name", "one-regex", "mapping-key", "bare-list"],
)
def test_keep_fp32_entries_that_select_nothing_are_named_once(
    mode: str, keep: str, make: Any, named: list[str]
) -> None:
    prec = Precision(mode, "cpu", keep_fp32=keep)
    obj = make()
    msgs = [m for m in _warnings(lambda: prec.prepare(obj)) if "keep_fp32" in m]
    assert len(msgs) == 1 and all(n in msgs[0] for n in named), msgs
    assert "LayerNorm'" not in msgs[0] or named == ["'LayerNorm'", "bare tensors"]  # matched ones unnamed


@pytest.mark.parametrize(
    ("mode", "keep", "make"),
    [
        ("bf16-true", "LayerNorm,re:^proj$", Clip),
        ("bf16-true", "re:^_xyz$,_opacity", lambda: vars(Gaussians())),
        ("fp32", "LayerNrom", Clip),  # fp32 keeps everything in fp32 anyway: nothing to warn about
    ],
)
def test_keep_fp32_that_selects_something_is_quiet(mode: str, keep: str, make: Any) -> None:
    prec = Precision(mode, "cpu", keep_fp32=keep)
    obj = make()
    assert [m for m in _warnings(lambda: prec.prepare(obj)) if "keep_fp32" in m] == []


seen: list[torch.dtype] = []
"""Input dtypes the custom Function's forward saw."""


def _function(prec: Precision) -> type[torch.autograd.Function]:
    class Fn(torch.autograd.Function):
        @staticmethod
        @prec.custom_fwd
        def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
            seen.append(x.dtype)
            ctx.save_for_backward(x)
            return x * x

        @staticmethod
        @prec.custom_bwd
        def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
            (x,) = ctx.saved_tensors
            return 2 * x * grad

    return Fn


def test_fp64_hands_float32_kernels_float32_and_gets_float64_back() -> None:
    """fp64: a float32-only Function or ``@fp32`` helper gets float32 (float64 inputs are cast too, as
    docs/adopt.md promises) and, in fp64 code (scope, a prepared module's forward), returns float64."""
    prec = Precision("fp64", "cpu")
    x = torch.randn(3, dtype=torch.float64, requires_grad=True)
    seen.clear()
    with prec.scope():
        y = _function(prec).apply(x)
    y.sum().backward()
    assert seen == [torch.float32] and y.dtype == torch.float64
    assert x.grad is not None and x.grad.dtype == torch.float64
    torch.testing.assert_close(x.grad, 2 * x.detach().float().double())  # computed in float32

    @fp32
    def loss(a: torch.Tensor) -> torch.Tensor:
        seen.append(a.dtype)
        return a.sum()

    with prec.scope():
        assert loss(x).dtype == torch.float64 and seen[-1] == torch.float32
    assert loss(x.bfloat16()).dtype == torch.float32  # not fp64 code: float32, as before


class Spectral(nn.Module):
    """FNO-style layer (QA s12): a complex weight, a complex buffer, a real Linear."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.w = nn.Parameter(0.3 * torch.randn(4, 4, 3, dtype=torch.cfloat))
        self.register_buffer("phase", torch.polar(torch.ones(3), torch.arange(3.0)))
        self.lin = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: B, C, N
        xf = torch.fft.rfft(x, dim=-1)[..., :3] * self.phase.to(self.w.dtype)
        y = torch.fft.irfft(torch.einsum("bim,iom->bom", xf, self.w), n=x.shape[-1], dim=-1)
        return y + self.lin(x.transpose(1, 2)).transpose(1, 2)


# (mode, dtype of the complex weight and buffer, of the real Linear) after prepare
COMPLEX_ROWS = [
    ("fp64", torch.complex128, torch.float64),
    ("bf16-true", torch.complex64, torch.bfloat16),  # no complex bf16: left as it was
    ("fp16-true", torch.complex64, torch.float16),
    ("fp32", torch.complex64, torch.float32),
]


@pytest.mark.parametrize(("mode", "complex_dtype", "real_dtype"), COMPLEX_ROWS)
def test_complex_parameters_keep_their_imaginary_part(
    mode: str, complex_dtype: torch.dtype, real_dtype: torch.dtype
) -> None:
    model, plain = Spectral(), Spectral()
    model.w.grad = torch.full_like(model.w, 1 + 2j)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # fp16 emulated on this CPU
        prec = Precision(mode, "cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # torch's "discards the imaginary part" warning
        prepared = prec.prepare(model)
    assert prepared is model and model.w.dtype == model.phase.dtype == complex_dtype
    assert model.lin.weight.dtype == real_dtype and model.w.grad is not None
    assert model.w.grad.dtype == complex_dtype and model.w.grad[0, 0, 0] == 1 + 2j
    assert torch.equal(model.w.detach().to(torch.complex128), plain.w.detach().to(torch.complex128))
    assert torch.equal(model.phase.to(torch.complex128), plain.phase.to(torch.complex128))
    if mode == "fp64":  # trains as plain PyTorch converted by hand does
        plain.w.data = plain.w.data.to(torch.complex128)
        plain.phase = plain.phase.to(torch.complex128)
        plain.lin.double()
        x = torch.randn(2, 4, 8, dtype=torch.float64)
        out, expected = model(x), plain(x)
        assert out.dtype == torch.float64 and torch.equal(out, expected)


def test_complex_tensors_in_a_mapping_keep_their_imaginary_part() -> None:
    spectrum = nn.Parameter(torch.randn(3, dtype=torch.cfloat))
    Precision("fp64", "cpu").prepare({"spectrum": spectrum})
    assert spectrum.dtype == torch.complex128 and spectrum.imag.abs().sum() > 0
    Precision("bf16-true", "cpu").prepare([spectrum])
    assert spectrum.dtype == torch.complex128  # no complex bf16: as it was
