"""``ampkit doctor``: patched devices and a fixed measurement, so the advice is deterministic."""

from __future__ import annotations

import json
from typing import Any

import pytest
import torch
from conftest import A100, CPU_BF16, CPU_PLAIN, V100

import ampkit.hardware.report as report_module
from ampkit.cli import main
from ampkit.hardware import SCHEMA, DeviceCaps, DtypeThroughput, MatmulPoint, Throughput, doctor_report

V100_16G = DeviceCaps("cuda", "Tesla V100", (7, 0), total_memory_bytes=16 * 1024**3)
H100_80G = DeviceCaps("cuda", "H100", (9, 0), total_memory_bytes=80 * 1024**3)


def fake_throughput(**ratios: float) -> Throughput:
    results = {}
    for name, ratio in {"fp32": 1.0, **ratios}.items():
        seconds = 2 * 1024**3 / (100e9 * ratio)
        results[name] = DtypeThroughput(name, (MatmulPoint(1024, seconds, seconds, 3),))
    return Throughput("test", 2, results)


def play(monkeypatch: pytest.MonkeyPatch, cpu: DeviceCaps, gpu: DeviceCaps | None, **ratios: float) -> None:
    """Make ``doctor_report`` see ``cpu`` (and ``gpu`` for cuda devices) and measure ``ratios``."""

    def caps(device: Any) -> DeviceCaps:
        return gpu if gpu is not None and torch.device(device).type == "cuda" else cpu

    def measure(*args: Any, **kwargs: Any) -> Throughput:
        return fake_throughput(**ratios)

    monkeypatch.setattr(report_module, "device_capabilities", caps)
    monkeypatch.setattr(report_module, "measure_matmul", measure)


@pytest.fixture(autouse=True)
def _wide(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")


def test_this_cpu_recommends_bf16_mixed_with_the_ratio(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    play(monkeypatch, CPU_BF16, None, bf16=2.7, fp16=0.0025, fp64=0.4)
    assert main(["doctor", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "Recommended: bf16-mixed" in out and "bf16 matmul measured 2.70x fp32 (1024²)" in out
    assert "fp16 compute here is emulated: matmul measured 400.0x slower than fp32" in out
    assert "avx512_bf16 on cpu" in out and "2.7x at 1024²" in out


def test_json_is_only_json_and_follows_the_schema(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    play(monkeypatch, CPU_BF16, None, bf16=2.7, fp16=0.0025)
    assert main(["doctor", "--json", "--device", "cpu"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["schema"] == SCHEMA == "ampkit.doctor/1"
    assert set(data) == {
        "schema",
        "torch",
        "target",
        "devices",
        "support",
        "throughput",
        "recommendation",
        "memory_advice",
    }
    assert data["devices"][0]["cpu_flags"] == ["avx512_bf16", "avx512f"]
    assert data["support"]["fp16"]["level"] == "emulated"
    bf16 = data["throughput"]["results"]["bf16"]
    assert bf16["ratio_to_fp32"] == 2.7 and bf16["ratio_size"] == 1024 and bf16["size"] == 1024
    rec = data["recommendation"]
    assert rec["mode"] == "bf16-mixed" and rec["tree_mode"] == "fp32" and rec["corrected"] is True
    assert data["memory_advice"] is None


@pytest.mark.parametrize(
    ("gpu", "mode", "fp8"),
    [
        (V100_16G, "fp16-mixed", "emulated"),
        (A100, "bf16-mixed", "emulated"),
        (H100_80G, "bf16-mixed", "hardware"),
    ],
)
def test_gpus(monkeypatch: pytest.MonkeyPatch, gpu: DeviceCaps, mode: str, fp8: str) -> None:
    play(monkeypatch, CPU_PLAIN, gpu, tf32=7.0, bf16=14.0, fp16=15.0)
    data = doctor_report("cuda:0")
    assert [d["type"] for d in data["devices"]] == ["cpu", "cuda"]
    assert data["recommendation"]["mode"] == mode and not data["recommendation"]["corrected"]
    assert data["support"]["fp8"]["level"] == fp8
    assert data["support"]["tf32"]["level"] == ("no" if gpu is V100_16G else "hardware")
    advice = data["memory_advice"]
    if gpu.total_memory_bytes is None:
        assert advice is None
    else:
        assert mode in advice["advice"] and advice["tier"].startswith(
            "medium" if gpu is V100_16G else "very large"
        )


def test_cpu_without_bf16_gets_fp32(monkeypatch: pytest.MonkeyPatch) -> None:
    play(monkeypatch, CPU_PLAIN, None, bf16=0.3, fp16=0.003)
    rec = doctor_report("cpu")["recommendation"]
    assert rec["mode"] == "fp32" and not rec["corrected"]
    assert any(f.startswith("bf16 compute here is emulated") for f in rec["facts"])


def test_budget_zero_skips_the_measurement(monkeypatch: pytest.MonkeyPatch) -> None:
    play(monkeypatch, CPU_BF16, V100)
    data = doctor_report("cpu", budget_s=0)
    assert data["throughput"] is None and data["recommendation"]["mode"] == "fp32"
    assert "not measured" in data["recommendation"]["reason"]


def test_real_probe_on_this_machine(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["doctor", "--json", "--budget", "0.3"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["throughput"]["torch_threads"] == torch.get_num_threads()
    assert data["throughput"]["threads"] in (1, torch.get_num_threads())  # 1 when other jobs hold the cores
    assert {"fp32", "bf16", "fp16"} <= set(data["throughput"]["results"])


def test_negative_budget_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["doctor", "--budget", "-1"]) == 2
    assert "--budget -1: must be a finite number >= 0 (seconds" in capsys.readouterr().err
