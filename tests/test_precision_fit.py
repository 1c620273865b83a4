"""Device fit: one patchable function decides errors and warnings per device."""

from __future__ import annotations

import pytest
from conftest import A100, CPU_BF16, CPU_PLAIN, H100, V100

from ampkit.precision import MODES, Precision, PrecisionError, PrecisionWarning
from ampkit.precision.fit import check_fit


def test_bf16_on_pre_ampere_gpu_is_an_error_suggesting_fp16() -> None:
    for mode in ("bf16-mixed", "bf16-true"):
        with pytest.raises(PrecisionError, match=r"compute capability >= 8.0.*\(7, 0\): use fp16-mixed"):
            check_fit(MODES[mode], V100)
    assert check_fit(MODES["fp16-mixed"], V100) == []


@pytest.mark.parametrize("caps", [A100, H100])
def test_ampere_and_hopper_fit_every_mode(caps) -> None:  # type: ignore[no-untyped-def]
    for spec in MODES.values():
        if spec.name in ("fp64", "fp32", "tf32", "bf16-mixed", "fp16-mixed", "bf16-true", "fp16-true"):
            assert check_fit(spec, caps) == []


def test_fp16_on_cpu_warns_with_reason_and_suggests_bf16() -> None:
    (message,) = check_fit(MODES["fp16-mixed"], CPU_BF16)
    assert (
        "no fp16 arithmetic in hardware" in message
        and "tens to hundreds of times slower than fp32" in message
    )
    assert message.endswith("use bf16-mixed")
    (message,) = check_fit(MODES["fp16-true"], CPU_PLAIN)
    assert message.endswith("use fp32")


def test_bf16_on_cpu_without_bf16_hardware_warns_slow() -> None:
    (message,) = check_fit(MODES["bf16-mixed"], CPU_PLAIN)
    assert "no avx512_bf16 / AMX" in message and "slow" in message
    assert check_fit(MODES["bf16-mixed"], CPU_BF16) == []


def test_tf32_on_cpu_says_it_is_plain_fp32() -> None:
    (message,) = check_fit(MODES["tf32"], CPU_BF16)
    assert "runs exactly as fp32" in message


def test_precision_emits_fit_warning() -> None:
    with pytest.warns(PrecisionWarning, match="no fp16 arithmetic"):
        prec = Precision("fp16-mixed", "cpu", caps=CPU_BF16)
    assert len(prec.warnings) == 1


def test_fit_is_patchable_in_one_place(monkeypatch: pytest.MonkeyPatch) -> None:
    import ampkit.precision.policy as policy

    monkeypatch.setattr(policy, "device_capabilities", lambda device: V100)
    with pytest.raises(PrecisionError, match="use fp16-mixed"):
        Precision("bf16-mixed", "cpu")
