"""Every accepted spelling maps to its canonical mode; bad spellings list the valid ones."""

from __future__ import annotations

import pytest

from ampkit.precision import CANONICAL, PrecisionError, canonical_mode

SPELLINGS = {
    # canonical names
    "fp64": "fp64", "fp32": "fp32", "tf32": "tf32", "bf16-mixed": "bf16-mixed",
    "fp16-mixed": "fp16-mixed", "bf16-true": "bf16-true", "fp16-true": "fp16-true",
    # Lightning
    "64": "fp64", "64-true": "fp64", "32": "fp32", "32-true": "fp32", "16": "fp16-mixed",
    "16-mixed": "fp16-mixed", "bf16": "bf16-mixed", "16-true": "fp16-true",
    # Accelerate
    "no": "fp32", "fp16": "fp16-mixed",
    # case, blanks and underscores do not matter
    " BF16_Mixed ": "bf16-mixed", "FP16_TRUE": "fp16-true",
}  # fmt: skip


@pytest.mark.parametrize(("spelling", "mode"), sorted(SPELLINGS.items()))
def test_spelling_maps_to_mode(spelling: str, mode: str) -> None:
    assert canonical_mode(spelling) == mode


@pytest.mark.parametrize("value", [16, 32, 64])
def test_lightning_integers(value: int) -> None:
    assert canonical_mode(value) == {16: "fp16-mixed", 32: "fp32", 64: "fp64"}[value]


@pytest.mark.parametrize("bad", ["fp8x", "half-ish", "", "mixed", "16-bf"])
def test_unknown_spelling_is_one_line_listing_valid(bad: str) -> None:
    with pytest.raises(PrecisionError) as err:
        canonical_mode(bad)
    message = str(err.value)
    assert "\n" not in message and repr(bad) in message
    assert all(name in message for name in CANONICAL)
