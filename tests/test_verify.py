"""``ampkit.verify``: each check passes on a working mode and fails on a deliberately broken one."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from conftest import V100

import ampkit.verify.runner as runner
from ampkit.optim import PrecisionOptimizer, StepOutcome
from ampkit.precision import CANONICAL, MODES
from ampkit.verify import expected_dtypes, verify_mode, verify_modes


def test_expected_dtypes_come_from_the_name() -> None:
    assert expected_dtypes("bf16-mixed") == (torch.bfloat16, torch.float32)
    assert expected_dtypes("fp16-true") == (torch.float16, torch.float16)
    assert expected_dtypes("tf32") == (torch.float32, torch.float32)
    assert expected_dtypes("fp64") == (torch.float64, torch.float64)


def test_every_runnable_mode_passes_on_this_cpu() -> None:
    reports = verify_modes()
    assert [r.mode for r in reports] == list(CANONICAL)
    by_mode = {r.mode: r for r in reports}
    assert by_mode["fp8-mixed"].status == "skip" and "8.9" in by_mode["fp8-mixed"].notes[0]
    assert {m: r.status for m, r in by_mode.items() if m != "fp8-mixed"} == {
        m: "pass" for m in CANONICAL if m != "fp8-mixed"
    }
    assert by_mode["bf16-mixed"].check("dtypes").detail == "bf16/fp32/fp32"  # type: ignore[union-attr]
    assert by_mode["bf16-true"].check("dtypes").detail == "bf16/bf16/fp32"  # type: ignore[union-attr]
    scaler = by_mode["fp16-mixed"].check("scaler")
    assert scaler is not None and scaler.passed and "inf skipped, scale 65536->32768" in scaler.detail
    assert by_mode["fp32"].check("scaler").passed is None  # type: ignore[union-attr]
    assert any("runs exactly as fp32" in n for n in by_mode["tf32"].notes)
    assert any("emulated" in n for n in by_mode["fp16-true"].notes)


def test_fp8_emulated_and_int8_qat_check_their_layers() -> None:
    fp8 = verify_mode("fp8-mixed", fp8_emulate=True)
    assert fp8.status == "pass" and fp8.check("dtypes").detail == "bf16/fp32/fp32"  # type: ignore[union-attr]
    assert verify_mode("int8-qat").status == "pass"


def test_wrong_autocast_dtype_in_a_modespec_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    broken = dataclasses.replace(MODES["bf16-mixed"], autocast_dtype=torch.float16)
    monkeypatch.setitem(MODES, "bf16-mixed", broken)
    report = verify_mode("bf16-mixed")
    dtypes = report.check("dtypes")
    assert report.status == "fail" and dtypes is not None and dtypes.passed is False
    assert dtypes.detail == "fp16/fp32/fp32, expected bf16/fp32/fp32"


def test_a_step_that_does_not_update_fails_loss_and_scaler(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_update(self: PrecisionOptimizer) -> StepOutcome:
        self.zero_grad()
        self.steps += 1
        return StepOutcome(self.steps, True, None, None, None)

    monkeypatch.setattr(PrecisionOptimizer, "step", no_update)
    report = verify_mode("fp16-mixed")
    assert report.status == "fail"
    assert report.check("loss").passed is False  # type: ignore[union-attr]
    assert report.check("scaler").passed is False  # type: ignore[union-attr]


def test_a_crashing_check_is_a_failed_row_not_a_crash(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(self: PrecisionOptimizer, loss: torch.Tensor) -> None:
        raise RuntimeError("backward exploded")

    monkeypatch.setattr(PrecisionOptimizer, "backward", boom)
    report = verify_mode("fp32")
    loss = report.check("loss")
    assert report.status == "fail" and loss is not None and "RuntimeError: backward exploded" in loss.detail


def test_modes_that_cannot_run_are_skipped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runner, "device_capabilities", lambda device: V100)
    report = verify_mode("bf16-mixed")
    assert report.status == "skip" and report.checks == ()
    assert "use fp16-mixed" in report.notes[0]
