"""Flags and environment resolve to one mode; conflicts are errors."""

from __future__ import annotations

import logging

import pytest

from ampkit.precision import PrecisionError, PrecisionRequest, from_env, resolve

CASES = [
    (PrecisionRequest(), {}, "fp32"),
    (PrecisionRequest(precision="16-mixed"), {}, "fp16-mixed"),
    (PrecisionRequest(mixed_precision=True), {}, "fp16-mixed"),  # the guide's default dtype is fp16
    (PrecisionRequest(mixed_precision=True, amp_dtype="bf16"), {}, "bf16-mixed"),
    (PrecisionRequest(amp=True), {}, "bf16-mixed"),  # this machine has bf16 in hardware
    (PrecisionRequest(amp=True, amp_dtype="fp16"), {}, "fp16-mixed"),
    (PrecisionRequest(precision="bf16", mixed_precision=True, amp_dtype="bf16"), {}, "bf16-mixed"),  # agree
    (PrecisionRequest(), {"USE_AMP": "1"}, "bf16-mixed"),
    (PrecisionRequest(), {"USE_AMP": "1", "AMP_DTYPE": "fp16"}, "fp16-mixed"),
    (PrecisionRequest(), {"USE_AMP": "0", "AMP_DTYPE": "fp16"}, "fp32"),
    (PrecisionRequest(precision="fp32"), {"USE_AMP": "1"}, "fp32"),  # flags beat the environment
]


@pytest.mark.parametrize(("request_", "env", "mode"), CASES)
def test_resolution(request_: PrecisionRequest, env: dict[str, str], mode: str) -> None:
    assert resolve(request_, environ=env, bf16_in_hardware=True) == mode


def test_amp_without_bf16_hardware_chooses_fp16_and_logs_it(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="ampkit"):
        assert resolve(PrecisionRequest(amp=True), environ={}, bf16_in_hardware=False) == "fp16-mixed"
    assert "--amp chose fp16-mixed (no bf16 in hardware)" in caplog.text


@pytest.mark.parametrize(
    ("request_", "needle"),
    [
        (PrecisionRequest(precision="fp32", amp=True), "conflicting precision flags: --precision fp32"),
        (PrecisionRequest(precision="fp16", mixed_precision=True, amp_dtype="bf16"), "conflicting"),
        (
            PrecisionRequest(mixed_precision=True, amp_dtype="fp8"),
            "unknown --amp_dtype 'fp8'; valid: fp16, bf16",
        ),
        (PrecisionRequest(amp_dtype="bf16"), "--amp_dtype bf16 needs --mixed_precision or --amp"),
    ],
)
def test_conflicts_and_bad_values(request_: PrecisionRequest, needle: str) -> None:
    with pytest.raises(PrecisionError, match=needle.replace("(", r"\(")) as err:
        resolve(request_, environ={}, bf16_in_hardware=True)
    assert "\n" not in str(err.value)


def test_bad_env_values() -> None:
    with pytest.raises(PrecisionError, match="USE_AMP='maybe'"):
        from_env({"USE_AMP": "maybe"})
    with pytest.raises(PrecisionError, match="AMP_DTYPE 'int4'"):
        from_env({"USE_AMP": "1", "AMP_DTYPE": "int4"})
