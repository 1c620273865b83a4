"""fp8-mixed: per-tensor scaled float8 Linear matmuls, emulated on CPU; the GPU path on cc >= 8.9 only."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
from conftest import A100, H100
from torch import nn

from ampkit.engine import TrainConfig, train
from ampkit.precision import MODES, Precision, PrecisionError, canonical_mode
from ampkit.precision.fit import check_fit
from ampkit.precision.fp8 import E4M3, E5M2, Float8Linear, convert_to_fp8, fp8_mm, to_fp8
from ampkit.precision.keep_fp32 import ModuleFilter

HAS_FP8_GPU = torch.cuda.is_available() and torch.cuda.get_device_capability() >= (8, 9)


@pytest.fixture
def one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_fit_errors_without_fp8_hardware_unless_emulated() -> None:
    spec = MODES["fp8-mixed"]
    with pytest.raises(
        PrecisionError, match=r"fp8-mixed needs compute capability >= 8.9.*\(8, 0\).*--fp8-emulate"
    ):
        check_fit(spec, A100)
    with pytest.raises(PrecisionError, match=r"fp8-mixed needs compute capability >= 8\.9"):
        Precision("fp8-mixed", "cpu")
    assert check_fit(spec, H100) == []
    assert any("fp8 emulated" in w for w in check_fit(spec, A100, fp8_emulate=True))
    assert canonical_mode("fp8") == "fp8-mixed"


def test_per_tensor_scaling_puts_amax_on_the_dtype_max() -> None:
    x = torch.randn(64, 32) * 1e-3  # tiny values: unscaled they would flush to zero in e4m3
    for dtype in (E4M3, E5M2):
        q, scale = to_fp8(x, dtype)
        assert q.dtype == dtype
        assert q.float().abs().max() == torch.finfo(dtype).max
        back = q.float() / scale
        mantissa_bits = 3 if dtype == E4M3 else 2
        rel = ((back - x).abs() / x.abs().clamp(min=x.abs().max() * 2**-6)).max()
        assert 0 < rel <= 2 ** -(mantissa_bits + 1) + 1e-6  # round-to-nearest: half an ulp


def test_float8_linear_is_the_quantise_dequantise_matmul() -> None:
    torch.manual_seed(0)
    linear = nn.Linear(32, 16)
    fp8 = Float8Linear(linear, emulate=True)
    assert fp8.weight is linear.weight and fp8.bias is linear.bias
    x = torch.randn(8, 32, requires_grad=True)
    y = fp8(x)
    xq, xs = to_fp8(x.detach())
    wq, ws = to_fp8(linear.weight.detach())
    want = (xq.float() @ wq.float().t()) / (xs * ws) + linear.bias.detach()
    assert torch.allclose(y, want, rtol=1e-6, atol=1e-6)
    exact = linear(x)
    assert not torch.equal(y, exact) and torch.allclose(y, exact, atol=0.15)  # fp8 error, not garbage
    grad = torch.randn_like(y)
    y.backward(grad)
    gq, gs = to_fp8(grad, E5M2)
    assert torch.allclose(x.grad, (gq.float() @ wq.float()) / (gs * ws), rtol=1e-5, atol=1e-6)  # type: ignore[arg-type]
    assert torch.allclose(linear.weight.grad, (gq.float().t() @ xq.float()) / (gs * xs), rtol=1e-5, atol=1e-6)  # type: ignore[arg-type]


def test_emulation_matches_scaled_mm_where_torch_has_it() -> None:
    """The emulated matmul gives what ``torch._scaled_mm`` computes (CPU builds of torch >= 2.8 have it)."""
    a, sa = to_fp8(torch.randn(32, 64))
    b, sb = to_fp8(torch.randn(48, 64))
    try:
        kernel = torch._scaled_mm(
            a, b.t(), scale_a=sa.reciprocal(), scale_b=sb.reciprocal(), out_dtype=torch.float32
        )
    except (RuntimeError, NotImplementedError) as err:
        pytest.skip(f"no _scaled_mm on this device: {err}")
    emulated = fp8_mm(a, sa, b.t(), sb, torch.float32, emulate=True)
    assert torch.allclose(kernel, emulated, rtol=1e-5, atol=1e-5)


def test_keep_fp32_filter_selects_linears_that_stay_out_of_fp8() -> None:
    model = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Sequential(nn.Linear(8, 8)), nn.Linear(8, 2))
    convert_to_fp8(model, ModuleFilter.parse("re:^3$"), emulate=True)
    assert [type(m).__name__ for m in (model[0], model[2][0], model[3])] == [
        "Float8Linear",
        "Float8Linear",
        "Linear",
    ]
    assert isinstance(convert_to_fp8(nn.Linear(4, 4), ModuleFilter(), emulate=True), Float8Linear)


def test_fp8_mixed_emulated_trains_tinygpt_like_bf16_mixed(one_thread: None) -> None:
    results = {}
    for mode in ("bf16-mixed", "fp8-mixed"):
        config = TrainConfig(
            task="tinygpt",
            precision=mode,
            device="cpu",
            steps=60,
            size="small",
            lr=3e-3,
            fp8_emulate=True,
            progress=False,
            flop_share=False,
            keep_fp32="re:^head$",
        )
        results[mode] = train(config)
    fp8, bf16 = results["fp8-mixed"], results["bf16-mixed"]
    first, last = fp8.history[0].loss, fp8.history[-1].loss
    print(
        f"\ntinygpt/small 60 steps: fp8-mixed (emulated) loss {first:.3f} -> {last:.3f}, "
        f"eval {fp8.final['loss']:.3f}; bf16-mixed eval {bf16.final['loss']:.3f}"
    )
    assert "fp8=4 Linear emulated" in fp8.describe and "keep_fp32=re:^head$" in fp8.describe
    assert last < first - 0.1
    assert abs(fp8.final["loss"] - bf16.final["loss"]) < 0.05


@pytest.mark.skipif(
    not HAS_FP8_GPU, reason="needs a CUDA GPU with compute capability >= 8.9 (fp8 tensor cores)"
)
def test_gpu_fp8_kernels_match_emulation() -> None:
    torch.manual_seed(0)
    linear = nn.Linear(64, 32).cuda()
    x = torch.randn(16, 64, device="cuda", requires_grad=True)
    hard, soft = Float8Linear(linear, emulate=False), Float8Linear(linear, emulate=True)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        y_hard, y_soft = hard(x), soft(x)
    assert y_hard.dtype == torch.bfloat16
    assert torch.allclose(y_hard.float(), y_soft.float(), rtol=2e-2, atol=2e-2)
    y_hard.float().sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    prec = Precision("fp8-mixed", "cuda")
    model = prec.prepare(nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 16)))
    assert "fp8=2 Linear" in prec.describe(model) and "emulated" not in prec.describe(model)
