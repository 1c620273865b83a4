"""Telemetry: the share of matmul/conv FLOPs that really ran in low precision, and step statistics."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ampkit.engine import StepRecord, TrainConfig, build_run, train
from ampkit.numerics import DtypeFlopCounter, low_precision_flop_share, step_telemetry


def _share(mode: str, keep_fp32: str | None = None) -> dict:
    config = TrainConfig(
        task="digits", precision=mode, size="small", batch_size=4, device="cpu", keep_fp32=keep_fp32
    )
    return low_precision_flop_share(build_run(config))


def test_flop_share_follows_the_mode_and_keep_fp32() -> None:
    fp32, bf16 = _share("fp32"), _share("bf16-mixed")
    assert fp32["share"] == 0.0 and set(fp32["by_dtype"]) == {"float32"}
    assert bf16["share"] == 1.0 and set(bf16["by_dtype"]) == {"bfloat16"}
    kept = _share("bf16-mixed", keep_fp32="re:^head$")  # the classifier runs as an fp32 island
    assert 0.5 < kept["share"] < 1.0 and set(kept["by_dtype"]) == {"bfloat16", "float32"}
    assert kept["total_flops"] == bf16["total_flops"] == fp32["total_flops"]


def test_counter_counts_matmul_flops_exactly() -> None:
    a, b = torch.randn(8, 16), torch.randn(16, 4)
    with DtypeFlopCounter() as counter:
        out = a @ b
        nn.functional.linear(a.bfloat16(), b.t().bfloat16())
    assert torch.equal(out, a @ b)
    assert counter.summary()["by_dtype"] == {"bfloat16": 2 * 8 * 16 * 4, "float32": 2 * 8 * 16 * 4}
    assert counter.summary()["share"] == 0.5


def test_probe_leaves_training_bit_identical_and_result_records_it() -> None:
    def losses(probe: bool):  # type: ignore[no-untyped-def]
        config = TrainConfig(
            task="digits",
            precision="bf16-mixed",
            size="small",
            steps=3,
            batch_size=16,
            device="cpu",
            progress=False,
            flop_share=probe,
        )
        return train(config)

    with_probe, without = losses(True), losses(False)
    assert [r.loss for r in with_probe.history] == [r.loss for r in without.history]
    assert with_probe.final == without.final  # BatchNorm statistics restored after the probe
    assert with_probe.numerics["flop_share"]["share"] == 1.0
    assert "flop_share" not in without.numerics
    assert with_probe.to_dict()["numerics"]["skipped_step_rate"] == 0.0


def test_step_telemetry_scaled_and_unscaled_norms() -> None:
    history = [
        StepRecord(1, 1.0, True, 1024.0, 2.0, 0.1, 8),
        StepRecord(2, 1.0, False, 1024.0, float("inf"), 0.1, 8),
        StepRecord(3, 1.0, True, 512.0, 4.0, 0.1, 8),
    ]
    t = step_telemetry(history)
    assert t["skipped_step_rate"] == pytest.approx(1 / 3)
    assert (t["loss_scale_first"], t["loss_scale_last"], t["loss_scale_min"]) == (1024.0, 512.0, 512.0)
    assert t["grad_norm_unscaled_median"] == 3.0
    assert t["grad_norm_scaled_median"] == (2.0 * 1024 + 4.0 * 512) / 2
