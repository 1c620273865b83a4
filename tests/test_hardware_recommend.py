"""Recommendation: the seed guide's §8.1 tree, corrected by a (here: fixed, fake) measurement."""

from __future__ import annotations

import pytest
from conftest import A100, CPU_BF16, CPU_PLAIN, H100, V100

from ampkit.hardware import DeviceCaps, DtypeThroughput, MatmulPoint, Throughput, decision_tree, recommend

TURING = DeviceCaps("cuda", "RTX 2080", (7, 5))
PASCAL = DeviceCaps("cuda", "GTX 1080", (6, 1))


def measured(size: int = 1024, **ratios: float) -> Throughput:
    """fp32 at 100 GFLOP/s and each given dtype at ratio x that, all at ``size``."""
    results = {}
    for name, ratio in {"fp32": 1.0, **ratios}.items():
        seconds = 2 * size**3 / (100e9 * ratio)
        results[name] = DtypeThroughput(name, (MatmulPoint(size, seconds, seconds, 3),))
    return Throughput("test", 2, results)


@pytest.mark.parametrize(
    ("caps", "mode"),
    [
        (V100, "fp16-mixed"),
        (TURING, "fp16-mixed"),
        (A100, "bf16-mixed"),
        (H100, "bf16-mixed"),
        (PASCAL, "fp32"),
        (CPU_PLAIN, "fp32"),
        (CPU_BF16, "fp32"),
    ],
)
def test_decision_tree_of_the_guide(caps: DeviceCaps, mode: str) -> None:
    assert decision_tree(caps)[0] == mode
    rec = recommend(caps)  # unmeasured: the tree as is
    assert rec.mode == mode and not rec.corrected and "not measured" in rec.reason


def test_this_cpu_bf16_mixed_with_measured_ratio_and_fp16_slowdown() -> None:
    rec = recommend(CPU_BF16, measured(bf16=2.7, fp16=1 / 400, fp64=0.4))
    assert rec.mode == "bf16-mixed" and rec.tree_mode == "fp32" and rec.corrected
    assert "bf16 matmul measured 2.70x fp32 (1024²)" in rec.reason and "§8.1" in rec.reason
    fp16 = next(f for f in rec.facts if f.startswith("fp16"))
    assert fp16.startswith("fp16 compute here is emulated: matmul measured 400.0x slower than fp32")
    assert "fp16 modes not recommended here" in fp16
    assert any(f.startswith("fp64: matmul measured 2.5x slower") for f in rec.facts)


def test_cpu_without_bf16_stays_fp32_even_if_bf16_measures_fast() -> None:
    rec = recommend(CPU_PLAIN, measured(bf16=1.5, fp16=0.01))
    assert rec.mode == "fp32" and not rec.corrected
    assert any("implausible for an emulated dtype" in f for f in rec.facts)


def test_ampere_and_hopper_confirmed_by_measurement() -> None:
    for caps in (A100, H100):
        rec = recommend(caps, measured(tf32=7.0, bf16=14.0, fp16=14.5))
        assert rec.mode == "bf16-mixed" and not rec.corrected and "confirmed" in rec.reason


def test_fp16_wins_only_when_clearly_faster_than_bf16() -> None:
    assert recommend(A100, measured(bf16=2.0, fp16=3.0)).mode == "fp16-mixed"
    assert recommend(A100, measured(bf16=2.0, fp16=2.4)).mode == "bf16-mixed"


def test_volta_never_gets_bf16_even_if_measured_fast() -> None:
    rec = recommend(V100, measured(bf16=5.0, fp16=4.0))
    assert rec.mode == "fp16-mixed" and not rec.corrected


def test_slow_fp16_on_turing_corrects_to_fp32() -> None:
    rec = recommend(TURING, measured(fp16=1.05, bf16=0.5))
    assert rec.mode == "fp32" and rec.tree_mode == "fp16-mixed" and rec.corrected
    assert "overrules" in rec.reason


def test_tiny_sizes_are_inconclusive_and_keep_the_tree() -> None:
    rec = recommend(CPU_BF16, measured(size=128, bf16=2.0, fp16=0.1))
    assert rec.mode == "fp32" and "inconclusive" in rec.reason
    assert any("too small to count" in f for f in rec.facts)
