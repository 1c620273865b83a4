"""Flags and environment resolve to one mode; conflicts are errors."""

from __future__ import annotations

import logging

import pytest
import torch

from ampkit.precision import Precision, PrecisionError, PrecisionRequest, canonical_mode, from_env, resolve

#: Lightning's ``--precision 32-true`` left at its default.
LIGHTNING_DEFAULT = PrecisionRequest(precision="32-true")

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
    # `accelerate launch --mixed_precision X` sets ACCELERATE_MIXED_PRECISION; USE_AMP, if set, wins
    (PrecisionRequest(), {"ACCELERATE_MIXED_PRECISION": "bf16"}, "bf16-mixed"),
    (PrecisionRequest(), {"ACCELERATE_MIXED_PRECISION": "FP16"}, "fp16-mixed"),
    (PrecisionRequest(), {"ACCELERATE_MIXED_PRECISION": "fp8"}, "fp8-mixed"),
    (PrecisionRequest(), {"ACCELERATE_MIXED_PRECISION": "no"}, "fp32"),
    (PrecisionRequest(), {"ACCELERATE_MIXED_PRECISION": ""}, "fp32"),
    (PrecisionRequest(), {"ACCELERATE_MIXED_PRECISION": "bf16", "USE_AMP": "0"}, "fp32"),
    (
        PrecisionRequest(),
        {"ACCELERATE_MIXED_PRECISION": "bf16", "USE_AMP": "1", "AMP_DTYPE": "fp16"},
        "fp16-mixed",
    ),
    (PrecisionRequest(precision="fp32"), {"ACCELERATE_MIXED_PRECISION": "bf16"}, "fp32"),
    # a script's text --mixed_precision (diffusers / Accelerate), HF Trainer's --fp16 / --bf16
    (PrecisionRequest(mixed_precision=True, mixed_dtype="bf16"), {}, "bf16-mixed"),
    (PrecisionRequest(mixed_precision=True, mixed_dtype="fp16"), {}, "fp16-mixed"),
    (PrecisionRequest(mixed_precision=True, mixed_dtype="fp8"), {}, "fp8-mixed"),
    (PrecisionRequest(mixed_dtype="bf16"), {"USE_AMP": "1", "AMP_DTYPE": "fp16"}, "bf16-mixed"),
    (PrecisionRequest(mixed_precision=True, mixed_dtype="bf16", amp_dtype="bfloat16"), {}, "bf16-mixed"),
    (PrecisionRequest(bf16=True), {}, "bf16-mixed"),
    (PrecisionRequest(fp16=True), {}, "fp16-mixed"),
    (PrecisionRequest(bf16=True, precision="bf16-mixed"), {}, "bf16-mixed"),
    # dtype spellings of --amp_dtype (timm's float16/bfloat16, half, a torch dtype)
    (PrecisionRequest(amp=True, amp_dtype="float16"), {}, "fp16-mixed"),
    (PrecisionRequest(amp=True, amp_dtype="half"), {}, "fp16-mixed"),
    (PrecisionRequest(amp=True, amp_dtype="bfloat16"), {}, "bf16-mixed"),
    (PrecisionRequest(amp=True, amp_dtype=torch.float16), {}, "fp16-mixed"),
    (PrecisionRequest(mixed_precision=True, amp_dtype="torch.bfloat16"), {}, "bf16-mixed"),
    # the script's flags at their defaults: read after the environment, never over it
    (PrecisionRequest(defaults=LIGHTNING_DEFAULT), {}, "fp32"),
    (PrecisionRequest(defaults=LIGHTNING_DEFAULT), {"USE_AMP": "1", "AMP_DTYPE": "fp16"}, "fp16-mixed"),
    (PrecisionRequest(defaults=LIGHTNING_DEFAULT), {"AMPKIT_PRECISION": "bf16-true"}, "bf16-true"),
    (PrecisionRequest(defaults=LIGHTNING_DEFAULT), {"ACCELERATE_MIXED_PRECISION": "bf16"}, "bf16-mixed"),
    (PrecisionRequest(defaults=PrecisionRequest(precision="16-mixed")), {}, "fp16-mixed"),
    (PrecisionRequest(defaults=PrecisionRequest(precision="16-mixed")), {"USE_AMP": "0"}, "fp16-mixed"),
    (PrecisionRequest(precision="bf16-true", defaults=LIGHTNING_DEFAULT), {"USE_AMP": "1"}, "bf16-true"),
    # a typed --mixed_precision no: fp32 over the environment, unless another flag asks
    (PrecisionRequest(mixed_dtype="no"), {"USE_AMP": "1"}, "fp32"),
    (PrecisionRequest(mixed_dtype="no"), {"ACCELERATE_MIXED_PRECISION": "bf16"}, "fp32"),
    (PrecisionRequest(mixed_dtype="no", amp=True), {}, "bf16-mixed"),
    # HF's --tf32 True: tf32 where the rest would be fp32
    (PrecisionRequest(tf32=True), {}, "tf32"),
    (PrecisionRequest(tf32=True, bf16=True), {}, "bf16-mixed"),
    (PrecisionRequest(tf32=True), {"USE_AMP": "1", "AMP_DTYPE": "fp16"}, "fp16-mixed"),
    (PrecisionRequest(tf32=True), {"AMPKIT_PRECISION": "fp32"}, "tf32"),
    (PrecisionRequest(tf32=True, defaults=LIGHTNING_DEFAULT), {}, "tf32"),
    (PrecisionRequest(tf32=True, mixed_dtype="no"), {"USE_AMP": "1"}, "tf32"),
    (PrecisionRequest(defaults=PrecisionRequest(tf32=True)), {}, "tf32"),
    (PrecisionRequest(defaults=PrecisionRequest(tf32=True)), {"AMPKIT_PRECISION": "fp32"}, "fp32"),
]


@pytest.mark.parametrize(("request_", "env", "mode"), CASES)
def test_resolution(request_: PrecisionRequest, env: dict[str, str], mode: str) -> None:
    assert resolve(request_, environ=env, bf16_in_hardware=True) == mode


# (device type, bf16 in hardware, what --amp / USE_AMP=1 choose, the reason logged)
AUTO = [
    ("cpu", True, "bf16-mixed", "CPU: autocast's CPU dtype)"),
    (
        "cpu",
        False,
        "bf16-mixed",
        "CPU: autocast's CPU dtype, bf16 emulated here (slow)",
    ),  # never fp16 on a CPU
    ("cuda", True, "bf16-mixed", "cuda: bf16 in hardware"),
    ("cuda", False, "fp16-mixed", "cuda: no bf16 in hardware"),
]


@pytest.mark.parametrize(("device_type", "bf16", "mode", "reason"), AUTO)
def test_amp_and_use_amp_choose_by_device(
    device_type: str, bf16: bool, mode: str, reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="ampkit"):
        assert (
            resolve(PrecisionRequest(amp=True), environ={}, device_type=device_type, bf16_in_hardware=bf16)
            == mode
        )
        assert from_env({"USE_AMP": "1"}, device_type=device_type, bf16_in_hardware=bf16) == mode
    assert f"--amp chose {mode} ({reason}" in caplog.text
    assert f"USE_AMP=1 chose {mode} ({reason}" in caplog.text
    # an explicit dtype always wins over the device rule
    assert (
        resolve(PrecisionRequest(amp=True, amp_dtype="fp16"), environ={}, device_type=device_type)
        == "fp16-mixed"
    )


def test_amp_on_a_cpu_without_bf16_warns_at_the_users_line() -> None:
    from conftest import CPU_PLAIN

    from ampkit.precision import Precision, PrecisionWarning

    with pytest.warns(PrecisionWarning, match="no bf16 in hardware.*emulated and will be slow") as seen:
        prec = Precision.from_env({"USE_AMP": "1"}, "cpu", caps=CPU_PLAIN)
    assert prec.name == "bf16-mixed" and not prec.spec.grad_scaler
    assert [w.filename for w in seen] == [__file__]


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
        (
            PrecisionRequest(fp16=True, bf16=True),
            "conflicting precision flags: --fp16 (= fp16-mixed",
        ),
        (PrecisionRequest(mixed_dtype="bf16", amp_dtype="fp16"), "--mixed_precision bf16 (= bf16-mixed"),
        (
            PrecisionRequest(mixed_dtype="int8"),
            "--mixed_precision 'int8': unknown value; valid: no, fp16, bf16, fp8",
        ),
        (PrecisionRequest(bf16=True, precision="fp32"), "conflicting precision flags: --precision fp32"),
        (PrecisionRequest(amp=True, amp_dtype="fp32"), "valid: fp16, bf16 (or float16, half, bfloat16"),
        (PrecisionRequest(precision="fp32", tf32=True), "--tf32 True (= tf32"),
        (PrecisionRequest(mixed_dtype="maybe"), "--mixed_precision 'maybe': unknown value"),
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
    with pytest.raises(
        PrecisionError, match=r"ACCELERATE_MIXED_PRECISION='int8'; valid: no, fp16, bf16, fp8"
    ):
        from_env({"ACCELERATE_MIXED_PRECISION": "int8"})


# bare 16-bit dtype words name no mode (mixed or true?): the error says which two they could mean
AMBIGUOUS = [
    ("float16", "fp16-mixed (autocast, fp32 weights) or fp16-true (fp16 weights)"),
    ("half", "fp16-mixed (autocast, fp32 weights) or fp16-true"),
    (" Float16 ", "fp16-mixed (autocast, fp32 weights) or fp16-true"),
    ("bfloat16", "bf16-mixed (autocast, fp32 weights) or bf16-true (bf16 weights)"),
    (torch.float16, "fp16-mixed (autocast, fp32 weights) or fp16-true"),
    (torch.bfloat16, "bf16-mixed (autocast, fp32 weights) or bf16-true"),
    ("torch.bfloat16", "bf16-mixed (autocast, fp32 weights) or bf16-true"),
]


@pytest.mark.parametrize(("value", "choices"), AMBIGUOUS)
def test_bare_16_bit_dtypes_are_ambiguous_and_name_both_choices(value: object, choices: str) -> None:
    with pytest.raises(PrecisionError, match="is ambiguous") as err:
        Precision(value)  # type: ignore[arg-type]
    message = str(err.value)
    assert f"valid: {choices}" in message and "\n" not in message and "unknown" not in message


DTYPE_NAMES = [
    (torch.float32, "fp32"),
    (torch.float64, "fp64"),
    ("torch.float32", "fp32"),
    ("float32", "fp32"),
    ("double", "fp64"),
]


@pytest.mark.parametrize(("value", "mode"), DTYPE_NAMES)
def test_wide_dtypes_are_modes(value: object, mode: str) -> None:
    assert canonical_mode(value) == mode
    assert Precision(value).name == mode  # type: ignore[arg-type]


@pytest.mark.parametrize("value", [torch.int8, torch.float8_e4m3fn, "float8"])
def test_other_dtypes_stay_unknown(value: object) -> None:
    with pytest.raises(PrecisionError, match="unknown precision"):
        canonical_mode(value)
