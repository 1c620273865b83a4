"""Study meters: step-time statistics, energy counters (fake NVML, fake RAPL sysfs), FLOPs and peaks."""

from __future__ import annotations

import sys
import types

import pytest
import torch
from conftest import A100, CPU_BF16, H100

from ampkit.engine import StepRecord, TrainConfig, train
from ampkit.hardware import DeviceCaps
from ampkit.study.energy import (
    EnergyWindow,
    NoEnergyCounter,
    NvmlEnergy,
    RaplEnergy,
    open_counter,
    rapl_domains,
)
from ampkit.study.flops import FRESH_METHOD, PROBE_METHOD, count_step_flops, peak_tflops, step_flops
from ampkit.study.meters import ArmMeters, percentile, step_time_figures


def _records(times: list[float]) -> list[StepRecord]:
    return [StepRecord(i + 1, 1.0, True, None, None, t, 64) for i, t in enumerate(times)]


def test_step_time_excludes_warmup_and_reports_median_p90_throughput() -> None:
    times = [9.0, 9.0] + [0.1 * k for k in range(1, 11)]  # two slow warm-up steps
    figs = step_time_figures(_records(times), warmup=2)
    assert figs["step_time_median_s"]["value"] == pytest.approx(0.55)
    assert figs["step_time_p90_s"]["value"] == pytest.approx(percentile([0.1 * k for k in range(1, 11)], 90))
    assert figs["step_time_p90_s"]["value"] == pytest.approx(0.91)
    assert figs["throughput"]["value"] == pytest.approx(64 * 10 / 5.5)
    assert "warm-up excluded" in figs["step_time_median_s"]["method"]
    assert "steps 3-12" in figs["throughput"]["method"]


def _fake_rapl(root, values):  # type: ignore[no-untyped-def]
    dom = root / "intel-rapl:0"
    (root / "intel-rapl:0:0").mkdir(parents=True)  # a sub-domain: must not be double counted
    (root / "intel-rapl:0:0" / "energy_uj").write_text("5\n")
    (root / "intel-rapl:0:0" / "max_energy_range_uj").write_text("1000\n")
    dom.mkdir(exist_ok=True)
    (dom / "max_energy_range_uj").write_text("1000000\n")
    (dom / "energy_uj").write_text(f"{values}\n")
    return dom


def test_rapl_counter_sums_package_domains_and_unwraps(tmp_path) -> None:  # type: ignore[no-untyped-def]
    dom = _fake_rapl(tmp_path, 900_000)
    assert rapl_domains(tmp_path) == [dom]
    meter = open_counter(torch.device("cpu"), rapl_root=tmp_path)
    assert isinstance(meter, RaplEnergy) and "RAPL intel-rapl:0" in meter.method
    (dom / "energy_uj").write_text("950000\n")
    assert meter.read_j() == pytest.approx(0.05)
    (dom / "energy_uj").write_text("100000\n")  # wrapped: 1_000_000 - 950_000 + 100_000 = 150_000 uJ more
    assert meter.read_j() == pytest.approx(0.2)


def test_no_counter_means_unavailable_everywhere_in_the_arm(tmp_path) -> None:  # type: ignore[no-untyped-def]
    counter = open_counter(torch.device("cpu"), rapl_root=tmp_path / "absent")
    assert isinstance(counter, NoEnergyCounter) and "RAPL" in counter.reason
    meters = ArmMeters(0, 1, counter)
    figs = meters.energy_figures(items=100)
    for key in ("energy_j", "energy_per_item_j"):
        assert figs[key]["value"] is None and figs[key]["method"] == "unavailable"
        assert "RAPL" in figs[key]["unavailable"]


class _FakeNvml(types.ModuleType):
    """Just enough of pynvml: a counter in millijoules that advances 2500 mJ per read."""

    def __init__(self) -> None:
        super().__init__("fake_pynvml")
        self.mj = 1_000_000
        self.inited = False

    def nvmlInit(self) -> None:
        self.inited = True

    def nvmlDeviceGetHandleByIndex(self, index: int) -> str:
        return f"gpu{index}"

    def nvmlDeviceGetHandleByUUID(self, uuid: str) -> str:
        return f"uuid:{uuid}"

    def nvmlDeviceGetName(self, handle: str) -> bytes:
        return b"NVIDIA H100 80GB HBM3"

    def nvmlDeviceGetTotalEnergyConsumption(self, handle: str) -> int:
        self.mj += 2500
        return self.mj


def test_nvml_meter_reads_millijoules_through_pynvml(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    fake = _FakeNvml()
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    assert NvmlEnergy(3, uuid="abcd")._handle == "uuid:GPU-abcd"  # CUDA_VISIBLE_DEVICES-proof
    meter = NvmlEnergy(0)
    assert (
        meter._handle == "gpu0"
        and fake.inited
        and "nvmlDeviceGetTotalEnergyConsumption" in meter.method
        and "H100" in meter.method
    )
    synced: list[int] = []
    window = EnergyWindow(meter, lambda: synced.append(1))
    window.start()
    window.stop()
    assert window.joules == pytest.approx(2.5) and len(synced) == 2  # synchronised at both ends
    assert any("< 1 s" in flag for flag in window.flags)  # a sub-second window is flagged


def test_nvml_missing_is_unavailable_not_a_crash(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    broken = types.ModuleType("pynvml")
    monkeypatch.setitem(sys.modules, "pynvml", broken)  # no nvmlInit: like a driver without NVML
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i: types.SimpleNamespace(uuid="1234"))
    counter = open_counter(torch.device("cuda", 0))
    assert isinstance(counter, NoEnergyCounter) and "NVML" in counter.reason


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_real_nvml_counter_advances_under_load() -> None:
    counter = open_counter(torch.device("cuda"))
    if isinstance(counter, NoEnergyCounter):
        pytest.skip(counter.reason)
    window = EnergyWindow(counter, torch.cuda.synchronize)
    x = torch.randn(4096, 4096, device="cuda")
    window.start()
    for _ in range(200):
        x = torch.tanh(x @ x)
    window.stop()
    assert window.joules is not None and window.joules > 0


def test_peaks_are_named_and_cpus_have_none() -> None:
    assert peak_tflops("bf16-mixed", H100) == (989.0, "H100 SXM dense bf16 peak 989 TFLOP/s")
    assert peak_tflops("tf32", A100)[0] == 156.0
    assert peak_tflops("fp32", DeviceCaps("cuda", "NVIDIA H200", (9, 0)))[0] == 67.0
    assert peak_tflops("bf16-mixed", DeviceCaps("cuda", "NVIDIA H100 PCIe", (9, 0)))[0] is None
    value, why = peak_tflops("fp32", CPU_BF16)
    assert value is None and "no known peak" in why


def test_flop_count_is_forward_plus_backward_of_the_model() -> None:
    config = TrainConfig(
        task="digits", precision="fp32", size="small", batch_size=8, device="cpu", accumulate=2
    )
    flops = count_step_flops(config)
    # digits small: conv 1->8 (3x3, 8x8), conv 8->16 (3x3, 8x8), linear 256->10; forward 2*MACs, backward ~2x
    fwd = 2 * 8 * (1 * 8 * 9 * 64 + 8 * 16 * 9 * 64 + 256 * 10)
    assert 2.5 * fwd * 2 <= flops <= 3.0 * fwd * 2  # accumulate=2 micro-batches per step


@pytest.mark.parametrize(
    ("task", "precision"), [("digits", "fp32"), ("digits", "bf16-mixed"), ("tinygpt", "fp32")]
)
def test_step_flops_from_the_runs_probe_match_a_fresh_count(task: str, precision: str) -> None:
    """The arm counts a step's FLOPs from the run's own FLOP-share probe (no second model, no extra
    peak memory); it agrees with FlopCounterMode on a fresh copy, and also counts the CPU's flash
    attention, which FlopCounterMode leaves out."""
    config = TrainConfig(
        task=task, precision=precision, size="small", batch_size=4, device="cpu", steps=1, accumulate=2
    )
    result = train(config)
    flops, how = step_flops(config, result.numerics)
    fresh = count_step_flops(config)
    assert how == PROBE_METHOD and flops > 0
    if task == "digits":  # convolutions and linears only: the same formulas on the same shapes
        assert flops == fresh
    else:  # plus attention's forward and backward
        assert flops > fresh
    assert step_flops(config, {}) == (fresh, FRESH_METHOD)  # a run without the probe: a fresh count


def test_cpu_memory_figures_give_what_the_run_added_above_the_imports() -> None:
    """On a CPU the peak RSS holds Python and torch, which no precision halves; beside it the arm
    reports the peak above its RSS before the model was built (the GPU allocator's counterpart)."""
    meters = ArmMeters(0, 1, NoEnergyCounter("none here"))
    block = torch.ones(96 * 2**20 // 4)  # 96 MiB touched after the meters were made
    figs = meters.memory_figures()
    del block
    peak, added = figs["peak_rss_bytes"]["value"], figs["peak_rss_added_bytes"]["value"]
    assert meters.rss_at_start is not None and peak == meters.rss_at_start + added
    assert added >= 90 * 2**20 and "before its model was built" in figs["peak_rss_added_bytes"]["method"]
