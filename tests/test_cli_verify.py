"""``ampkit verify`` end to end: table, JSON, exit code 1 with the failing row."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from ampkit.cli import main
from ampkit.precision import MODES


@pytest.fixture(autouse=True)
def _wide(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")  # rich wraps at 80 columns off a terminal


def test_verify_passes_here(capsys: pytest.CaptureFixture[str]) -> None:
    # A subset: test_verify.py runs every mode; here the table, notes and skip rows matter.
    assert main(["verify", "--modes", "fp32,tf32,bf16-mixed,fp8-mixed"]) == 0
    out = capsys.readouterr().out
    assert out.count("PASS") == 3  # fp8-mixed is skipped: no fp8 hardware here
    assert any("fp8-mixed" in line and "skip" in line for line in out.splitlines())
    assert "all runnable modes pass" in out
    assert "runs exactly as fp32" in out  # tf32 on CPU is said to be fp32


def test_verify_exits_1_and_shows_the_failing_row(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(
        MODES, "bf16-mixed", dataclasses.replace(MODES["bf16-mixed"], autocast_dtype=torch.float16)
    )
    assert main(["verify", "--modes", "fp32,bf16-mixed"]) == 1
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if "bf16-mixed" in line and "FAIL" in line)
    assert "FAILED: fp16/fp32/fp32, expected bf16/fp32/fp32" in row
    assert "fp32" in out and "PASS" in out and "FAILED: bf16-mixed" in out


def test_verify_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["verify", "--modes", "bf16", "--json"]) == 0
    (report,) = json.loads(capsys.readouterr().out)
    assert report["mode"] == "bf16-mixed" and report["status"] == "pass"
    assert [c["name"] for c in report["checks"]] == ["dtypes", "scaler", "loss"]


def test_verify_bad_mode_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["verify", "--modes", "fp12"]) == 2
    assert "unknown precision 'fp12'" in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU message")
def test_verify_cuda_without_gpu_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["verify", "--device", "cuda"]) == 2
    assert "--device cuda: no CUDA device here (torch.cuda.is_available() is False); valid: cpu" in (
        capsys.readouterr().err
    )
