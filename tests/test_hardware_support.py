"""Support matrix: hardware / emulated / no per number format, from DeviceCaps alone."""

from __future__ import annotations

import pytest
from conftest import A100, CPU_BF16, CPU_PLAIN, H100, V100

from ampkit.hardware import FORMATS, DeviceCaps, support_matrix

PASCAL = DeviceCaps("cuda", "GTX 1080", (6, 1))
MAXWELL = DeviceCaps("cuda", "GTX 980", (5, 2))
ADA = DeviceCaps("cuda", "RTX 4090", (8, 9))
CPU_VNNI_FP16 = DeviceCaps("cpu", "sapphire rapids", None, frozenset({"amx_bf16", "amx_fp16", "amx_int8"}))


def levels(caps: DeviceCaps) -> dict[str, str]:
    return {name: s.level for name, s in support_matrix(caps).items()}


def test_every_format_listed_in_order() -> None:
    assert tuple(support_matrix(A100)) == FORMATS == ("fp64", "fp32", "tf32", "bf16", "fp16", "int8", "fp8")


@pytest.mark.parametrize(
    ("caps", "expected"),
    [
        (V100, {"tf32": "no", "bf16": "emulated", "fp16": "hardware", "int8": "hardware", "fp8": "emulated"}),
        (
            A100,
            {
                "tf32": "hardware",
                "bf16": "hardware",
                "fp16": "hardware",
                "int8": "hardware",
                "fp8": "emulated",
            },
        ),
        (ADA, {"tf32": "hardware", "bf16": "hardware", "fp8": "hardware"}),
        (
            H100,
            {
                "tf32": "hardware",
                "bf16": "hardware",
                "fp16": "hardware",
                "int8": "hardware",
                "fp8": "hardware",
            },
        ),
        (PASCAL, {"tf32": "no", "bf16": "emulated", "fp16": "hardware", "int8": "hardware"}),
        (MAXWELL, {"fp16": "emulated", "int8": "emulated"}),
        (
            CPU_PLAIN,
            {"tf32": "no", "bf16": "emulated", "fp16": "emulated", "int8": "emulated", "fp8": "emulated"},
        ),
        (CPU_BF16, {"tf32": "no", "bf16": "hardware", "fp16": "emulated"}),
        (CPU_VNNI_FP16, {"bf16": "hardware", "fp16": "hardware", "int8": "hardware"}),
    ],
)
def test_levels_per_device(caps: DeviceCaps, expected: dict[str, str]) -> None:
    got = levels(caps)
    assert {k: got[k] for k in expected} == expected
    assert got["fp32"] == got["fp64"] == "hardware"


def test_reasons_name_the_fact() -> None:
    cpu = support_matrix(CPU_BF16)
    assert cpu["bf16"].why == "avx512_bf16 on cpu"
    assert "no avx512_fp16 / amx_fp16" in cpu["fp16"].why and "slower than fp32" in cpu["fp16"].why
    assert "runs as fp32" in cpu["tf32"].why
    assert "storage only" in support_matrix(A100)["fp8"].why
    assert "cc 9.0" in support_matrix(H100)["fp8"].why


def test_mps_has_no_fp64() -> None:
    assert support_matrix(DeviceCaps("mps", "mps"))["fp64"].level == "no"
