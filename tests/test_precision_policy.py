"""The Precision value object: contexts, conversion, global state, the describe line."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ampkit.precision import Precision, PrecisionError


def _flags() -> tuple[bool, bool, str, torch.dtype]:
    return (
        torch.backends.cuda.matmul.allow_tf32,
        torch.backends.cudnn.allow_tf32,
        torch.get_float32_matmul_precision(),
        torch.get_default_dtype(),
    )


@pytest.mark.parametrize("mode", ["fp64", "fp32", "tf32", "bf16-mixed", "bf16-true", "fp16-true"])
def test_scope_restores_global_state_after_exception(mode: str) -> None:
    before = _flags()
    assert before[1] is True  # cuDNN's default is TF32 on: real fp32 must switch it off
    precision = Precision(mode)
    with pytest.raises(RuntimeError, match="boom"), precision.scope():
        inside = _flags()
        raise RuntimeError("boom")
    assert _flags() == before
    assert inside[0] is inside[1] is (mode == "tf32")
    assert inside[2] == ("high" if mode == "tf32" else "highest")
    # fp64 makes float64 the default; true-half modes leave the user's tensors float32
    assert inside[3] == (torch.float64 if mode == "fp64" else torch.float32)


def test_fp32_switches_off_both_tf32_flags() -> None:
    with Precision("fp32").scope():
        assert torch.backends.cuda.matmul.allow_tf32 is False
        assert torch.backends.cudnn.allow_tf32 is False


@pytest.mark.parametrize(
    ("mode", "line"),
    [
        ("fp32", "ampkit: precision=fp32 autocast=off grad_scaler=off tf32=off params=float32"),
        ("tf32", "ampkit: precision=tf32 autocast=off grad_scaler=off tf32=on params=float32"),
        (
            "bf16-mixed",
            "ampkit: precision=bf16-mixed autocast=cpu/bfloat16 grad_scaler=off tf32=off params=float32",
        ),
        (
            "fp16-mixed",
            "ampkit: precision=fp16-mixed autocast=cpu/float16 grad_scaler=on(init=65536) tf32=off params=float32",
        ),
        ("bf16-true", "ampkit: precision=bf16-true autocast=off grad_scaler=off tf32=off params=bfloat16"),
    ],
)
def test_describe(mode: str, line: str) -> None:
    assert Precision(mode).describe() == line


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.LayerNorm(8), nn.ReLU(), nn.Linear(8, 3))


def test_true_half_keeps_norms_in_fp32_and_outputs_half() -> None:
    precision = Precision("bf16-true")
    model = precision.prepare(_net())
    assert model[0].weight.dtype == torch.bfloat16 and model[1].weight.dtype == torch.float32
    seen = {}
    model[1].register_forward_hook(lambda m, i, o: seen.update(norm_in=i[0].dtype, norm_out=o.dtype))
    out = model(precision.cast_inputs(torch.randn(2, 4)))
    assert seen["norm_in"] == torch.float32  # the island casts inputs up...
    assert out.dtype == torch.bfloat16  # ...and hands bf16 back to the next layer
    assert precision.describe(model).endswith("params=bfloat16+float32")


def test_keep_fp32_by_regex_under_mixed_mode() -> None:
    precision = Precision("bf16-mixed", keep_fp32="re:^3$")
    model = precision.prepare(_net())
    x = torch.randn(2, 4)
    with precision.autocast():
        hidden = model[2](model[1](model[0](x)))
        assert model[0](x).dtype == torch.bfloat16
        assert model[3](hidden).dtype == torch.float32  # kept module ran with autocast off
        assert torch.is_autocast_enabled("cpu")  # and autocast is back on after it
    assert "keep_fp32=re:^3$" in precision.describe()


def test_keep_fp32_by_type_under_true_mode() -> None:
    precision = Precision("fp16-true", keep_fp32="Linear")
    model = precision.prepare(_net())
    assert model[0].weight.dtype == model[3].weight.dtype == torch.float32


def test_inference_context_is_autocast_without_grad() -> None:
    precision = Precision("bf16-mixed")
    model = precision.prepare(_net())
    with precision.inference():
        out = model(torch.randn(2, 4))
    assert out.dtype == torch.bfloat16 and not out.requires_grad


def test_autocast_that_would_silently_do_nothing_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    precision = Precision("bf16-mixed")

    class DisabledAutocast:
        _enabled = False

    monkeypatch.setattr(torch, "autocast", lambda *a, **k: DisabledAutocast())
    with pytest.raises(PrecisionError, match="would silently run fp32"):
        precision.autocast()


def test_constructors_from_env_and_args() -> None:
    import argparse

    from ampkit.precision.args import add_precision_args

    assert Precision.from_env({"USE_AMP": "1", "AMP_DTYPE": "fp16"}).name == "fp16-mixed"
    assert Precision.from_env({}).name == "fp32"
    args = add_precision_args(argparse.ArgumentParser()).parse_args(
        ["--mixed-precision", "--amp_dtype", "bf16"]
    )
    assert Precision.from_args(args).name == "bf16-mixed"


@pytest.mark.parametrize("mode", ["fp32", "bf16-mixed", "bf16-true"])
def test_inference_outputs_can_feed_a_loss_like_no_grad_ones(mode: str) -> None:
    """Distillation (QA s13b): teacher features under prec.inference(), a student regresses them. Under
    inference_mode fp32 failed ("Inference tensors cannot be saved for backward") while bf16 worked."""
    precision = Precision(mode)
    losses = {}
    for context in ("inference", "no_grad"):  # ampkit's context, and the script's own before the port
        torch.manual_seed(0)
        teacher, student = precision.prepare(nn.Linear(8, 8)), precision.prepare(nn.Linear(8, 8))
        x = precision.cast_inputs(torch.randn(4, 8))
        with precision.inference() if context == "inference" else torch.no_grad(), precision.autocast():
            target = teacher(x)
        assert not target.requires_grad and not torch.is_inference(target)
        with precision.autocast():
            loss = nn.functional.mse_loss(student(x).float(), target.float())
        loss.backward()
        assert student.weight.grad is not None and teacher.weight.grad is None
        losses[context] = (loss, student.weight.grad)
    assert torch.equal(losses["inference"][0], losses["no_grad"][0])
    assert torch.equal(losses["inference"][1], losses["no_grad"][1])
