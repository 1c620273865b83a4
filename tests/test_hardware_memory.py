"""Per-memory-size GPU advice: tiers and the bytes-per-parameter arithmetic."""

from __future__ import annotations

import pytest

from ampkit.hardware import memory_advice

GB = 10**9


@pytest.mark.parametrize(
    ("bytes_", "tier"),
    [
        (10 * GB, "small"),
        (16 * GB, "medium"),
        (24 * GB, "medium"),
        (40 * GB, "large"),
        (80 * GB, "very large"),
    ],
)
def test_tiers(bytes_: int, tier: str) -> None:
    advice = memory_advice(bytes_, "bf16-mixed")
    assert advice is not None and advice.tier.startswith(tier)
    assert "bf16-mixed" in advice.advice


def test_parameter_budget_arithmetic() -> None:
    advice = memory_advice(16 * 1024**3, "fp16-mixed")
    assert advice is not None
    assert advice.max_params_mixed == 1024**3 and advice.max_params_true == 2 * 1024**3
    line = advice.line()
    assert "16 GiB" in line and "~1.1B parameters" in line and "16 B/param" in line and "bf16-true" in line


def test_unknown_memory_gives_no_advice() -> None:
    assert memory_advice(None, "fp32") is None
