"""fp16 range analysis: per-layer magnitudes, underflow/overflow verdicts, a covering loss scale, drift A/B."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ampkit.engine import TrainConfig
from ampkit.numerics import FP16_MAX, FP16_TINY, advise, analyze
from ampkit.numerics.ranges import TensorStats
from ampkit.tasks import Task, TaskSpec


class TinyGradNet(nn.Module):
    """``main`` is an ordinary layer; ``tiny``'s output is multiplied by 1e-9 before the loss, so the
    gradients flowing into it (and its weight gradients) are ~1e-9 of normal: below fp16's 2^-24."""

    def __init__(self) -> None:
        super().__init__()
        self.main = nn.Linear(8, 4)
        self.tiny = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.main(x) + 1e-9 * self.tiny(x)


def tiny_grad_task(spec: TaskSpec) -> Task:
    """A task factory (``--task test_numerics_ranges:tiny_grad_task``) around :class:`TinyGradNet`."""
    torch.manual_seed(spec.seed)

    def batch(i: int) -> tuple[torch.Tensor, torch.Tensor]:
        gen = torch.Generator().manual_seed(1000 * spec.seed + i)
        return torch.randn(spec.batch_size, 8, generator=gen), torch.randint(
            0, 4, (spec.batch_size,), generator=gen
        )

    return Task(
        "tinygrad",
        TinyGradNet(),
        batch,
        lambda: [batch(10**6)],
        F.cross_entropy,
        lambda out, y: float((out.argmax(-1) == y).float().mean()),
    )


def _config(mode: str = "bf16-mixed") -> TrainConfig:
    return TrainConfig(
        task="test_numerics_ranges:tiny_grad_task",
        precision=mode,
        batch_size=16,
        device="cpu",
        progress=False,
    )


def test_tiny_gradient_layer_is_flagged_and_a_covering_loss_scale_is_named() -> None:
    report = analyze(_config(), steps=3)
    advice = report.advice
    flagged = {layer.name: layer.issues for layer in advice.flagged}
    assert flagged == {"tiny": ["grad-underflow"]}  # main and the model output are fine
    tiny = next(layer for layer in advice.layers if layer.name == "tiny")
    assert tiny.grad is not None and tiny.grad["share_below_fp16_tiny"] > 0.99
    assert tiny.grad["max"] < 1e-9
    # the named scale is a power of two that lifts tiny's significant gradients above fp16's
    # smallest subnormal and keeps every layer's largest gradient under 65504
    assert advice.recommendation == "fp16-mixed"
    scale = advice.loss_scale
    assert scale is not None and scale > 1 and math.log2(scale).is_integer()
    largest = max(layer.grad["max"] for layer in advice.layers if layer.grad)
    assert tiny.grad["p01_nonzero"] * scale >= FP16_TINY
    assert largest * scale <= FP16_MAX
    assert advice.scale_range is not None and advice.scale_range[0] <= scale <= advice.scale_range[1]


def test_drift_of_fp32_against_itself_is_zero_and_bf16_drifts_a_little() -> None:
    same = analyze(_config("fp32"), steps=3)
    assert [d.weight_drift for d in same.drift] == [0.0, 0.0, 0.0]
    assert all(d.loss_fp32 == d.loss_mode for d in same.drift)
    assert same.flop_share["share"] == 0.0
    bf16 = analyze(_config("bf16-mixed"), steps=3)
    drifts = [d.weight_drift for d in bf16.drift]
    assert all(0 < d < 0.1 for d in drifts)
    assert bf16.flop_share["share"] == 1.0 and bf16.flop_share["by_dtype"].keys() == {"bfloat16"}
    data = bf16.to_dict()
    assert data["drift"][0]["loss_delta"] == pytest.approx(
        data["drift"][0]["loss_mode"] - data["drift"][0]["loss_fp32"]
    )


def test_tensor_stats_counts_shares_exactly() -> None:
    stats = TensorStats()
    stats.add(torch.tensor([0.0, 1e-9, 2.0**-24, 1.0, 7e4, -8e4, float("inf"), 3.0]))
    stats.add(torch.tensor([0.5, -2e-8]))
    s = stats.summary()
    assert s is not None
    assert s["count"] == 10 and s["nonzero"] == 8  # zero and inf are not counted as non-zero magnitudes
    assert s["share_below_fp16_tiny"] == pytest.approx(2 / 8)  # 1e-9 and 2e-8; 2^-24 itself is representable
    assert s["share_above_fp16_max"] == pytest.approx(3 / 10)  # 7e4, 8e4, inf
    assert s["max"] == 8e4 and s["min_nonzero"] == pytest.approx(1e-9)


def _row(name: str, act_max: float, act_tiny: float, grad_small: float, grad_max: float) -> dict:
    def stats(big: float, below: float, small: float) -> dict:
        over = 0.01 if big > FP16_MAX else 0.0
        return {
            "max": big,
            "min_nonzero": small,
            "p01_nonzero": small,
            "share_below_fp16_tiny": below,
            "share_above_fp16_max": over,
            "count": 100,
            "nonzero": 100,
        }

    return {
        "name": name,
        "type": "Linear",
        "act": stats(act_max, act_tiny, 1e-3),
        "grad": stats(grad_max, 0.0, grad_small),
    }


def test_activation_overflow_or_too_wide_gradients_recommend_bf16() -> None:
    overflow = advise([_row("a", 1.0, 0.0, 1e-3, 1.0), _row("big", 1e6, 0.0, 1e-3, 1.0)])
    assert overflow.recommendation == "bf16-mixed" and overflow.keep_fp32 == ["big"]
    assert [layer.name for layer in overflow.flagged] == ["big"]
    wide = advise([_row("a", 1.0, 0.0, 1e-14, 1e3)])  # 2^-46 .. 2^10: more than fp16's 40 binades
    assert wide.recommendation == "bf16-mixed" and wide.loss_scale is None
    fine = advise([_row("a", 1.0, 0.0, 1e-6, 1.0)])
    assert fine.recommendation == "fp16-mixed" and fine.floor == "normal"
    assert fine.loss_scale is not None and 1e-6 * fine.loss_scale >= 2.0**-14
