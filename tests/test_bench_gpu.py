"""``make bench-gpu`` (benchmarks/bench_gpu.py): its no-GPU path, and its time limits and failure
handling with stand-in parts (tiny child processes), in-process and without a GPU."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType, SimpleNamespace

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def bench(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_gpu", REPO / "benchmarks" / "bench_gpu.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "bench_gpu", module)  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_without_a_gpu_it_says_so_in_one_line_and_exits_0(
    bench: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    doc = tmp_path / "benchmarks-gpu.md"
    assert bench.main(["--doc", str(doc), "--out", str(tmp_path / "runs")]) == 0
    out = capsys.readouterr()
    assert out.out.strip().splitlines() == [
        "bench-gpu: no CUDA GPU here (torch.cuda.is_available() is False); nothing to run"
    ]
    assert out.err == "" and not any(tmp_path.iterdir())  # nothing written


def _python(code: str) -> object:
    return lambda out: [sys.executable, "-c", code]


def test_the_suite_keeps_going_past_failures_and_time_limits(
    bench: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """ok, failing, hanging (stopped at its limit) and skipped (overall budget) parts: every one is
    a row of the report, which names the device; the suite exits 1 (a part failed) after writing it."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    props = SimpleNamespace(name="NVIDIA H200", major=9, minor=0, total_memory=141 * 2**30)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda index: props)
    monkeypatch.setattr(bench, "MIN_PART_S", 1.0)
    monkeypatch.setattr(bench, "RESERVE_S", 0.0)
    text = bench.text_summary()
    parts = [
        bench.Part("good", 20, _python("print('fine figures')"), text),
        bench.Part("broken", 20, _python("import sys; print('about to fail'); sys.exit(3)"), text),
        bench.Part("hangs", 1.5, _python("import time; print('started', flush=True); time.sleep(60)"), text),
        bench.Part("late", 20, _python("print('never runs')"), text),
    ]
    monkeypatch.setattr(bench, "PARTS", parts)
    doc = tmp_path / "benchmarks-gpu.md"
    assert bench.main(["--budget", "2.2", "--doc", str(doc), "--out", str(tmp_path / "runs")]) == 1
    printed = capsys.readouterr().out
    assert "[bench-gpu] 1/4 good: started" in printed and "  good | fine figures" in printed  # progress
    report = doc.read_text()
    assert "NVIDIA H200 (compute capability 9.0, 141 GiB)" in report
    assert "| good | ok |" in report and "fine figures" in report
    assert "| broken | failed: exit code 3 |" in report and "about to fail" in report
    assert "| hangs | timed out: stopped after its limit of" in report and "started" in report
    assert "| late | skipped: overall limit" in report
    assert "never runs" not in report


def test_compare_verify_and_data_summaries(bench: ModuleType, tmp_path: Path) -> None:
    def arm(mode: str, step_s: float, energy: float | None, mfu: float) -> dict[str, object]:
        fig = lambda v: {"value": v, "unit": "", "method": "m"}  # noqa: E731
        summary = {"step_time_median_s": fig(step_s), "speedup": fig(0.2 / step_s), "throughput": fig(8192 / step_s),
                   "peak_mem_allocated_bytes": fig(3 * 2**30), "energy_j": fig(energy), "mfu": fig(mfu)}  # fmt: skip
        if energy is None:
            summary["energy_j"] = {"value": None, "unavailable": "no NVML"}
        return {"mode": mode, "status": "measured", "summary": summary}

    study = {"settings": {"steps": 25, "warmup_steps": 5},
             "arms": [arm("fp32", 0.2, 170.0, 0.4), arm("bf16-mixed", 0.04, 60.0, 0.35),
                      {"mode": "fp8-mixed", "status": "failed", "reason": "RuntimeError: x"}]}  # fmt: skip
    (tmp_path / "results.json").write_text(json.dumps(study))
    lines = bench.compare_summary(tmp_path, "")
    table = "\n".join(lines)
    assert "| fp32 | measured | 200.0 | 1.00 | 40,960 | 3,072 | 8.50 | 40.0 | - |" in table
    assert "| fp8-mixed | failed: RuntimeError: x |" in table
    assert lines[-1] == "P3: bf16-mixed is 5.00x real fp32 (TF32 off) per step."
    assert bench.compare_summary(tmp_path / "missing", "") == ["no results.json was written"]
    verify_out = (
        "ampkit: warning: fp16 [emulated]\n"
        '[{"mode": "fp32", "status": "pass", "checks": [{"name": "loss", "detail": "1 -> 0.5"}], "notes": []}]\n'
        "ampkit: a log line after it"
    )
    assert bench.verify_summary(tmp_path, verify_out)[-1] == "| fp32 | pass | loss: 1 -> 0.5 |"
    missing = json.dumps({"status": "not available", "reason": "no output_dtype"})
    assert bench.data_summary(tmp_path, "log line\n" + missing) == ["not available: no output_dtype"]


def test_the_data_part_dry_run_on_the_cpu(bench: ModuleType, tmp_path: Path) -> None:
    """The loader part's own code (shards, both loaders, finish_batch), on the CPU and small."""
    result = bench.data_part(tmp_path, device="cpu", volumes=4, side=8, workers=0)
    assert result["status"] == "ok", result
    rows = {r["name"]: r for r in result["rows"]}
    assert rows["float16, widened on the GPU"]["bytes_per_voxel"] == 2
    assert rows["float32, widened in the workers"]["bytes_per_voxel"] == 4
    assert all(r["volumes_per_s"] > 0 and r["gb_per_s"] > 0 for r in rows.values())
    lines = bench.data_summary(tmp_path, "log\n" + json.dumps(result))
    assert lines[0] == result["setup"] and len(lines) == 6
