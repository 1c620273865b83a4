"""The parts of a command study, each on its own (no arm process): placeholders, launch lines,
step timing, value sources, the precision check, the tree and NVML meters, the log reader."""

from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from ampkit.study.arm_output import LogTail, OutputScanner
from ampkit.study.command_figures import pick_metric, series, step_figures, timeline
from ampkit.study.command_launch import this_python, wrap
from ampkit.study.placeholders import arm_env, expand
from ampkit.study.precision_check import check_precision
from ampkit.study.tree_meter import GpuMeter, TreeMeter, tree_pids

OUT = Path("/runs/arms/x")
CMD = ["python", "t.py", "--precision", "{precision}", "--seed", "{seed}", "{amp_flags}", "--o={out}/c"]


@pytest.mark.parametrize(
    ("mode", "amp_flags", "flags"),
    [
        ("fp32", None, []),
        ("bf16-mixed", None, ["--mixed_precision", "--amp_dtype", "bf16"]),
        ("fp16-mixed", "--amp --dtype={amp_dtype}", ["--amp", "--dtype=fp16"]),
        ("bf16-true", None, []),  # not a mixed mode: no switch flags
        ("tf32", "--fp16", []),
    ],
)
def test_placeholders_expand_per_mode(mode: str, amp_flags: str | None, flags: list[str]) -> None:
    argv = expand(CMD, mode, 7, OUT, amp_flags)
    assert argv == ["python", "t.py", "--precision", mode, "--seed", "7", *flags, f"--o={OUT}/c"]


def test_arm_environment_speaks_every_convention() -> None:
    own, unset = arm_env("fp16-mixed", 2, OUT, {"DATA": "{out}/d", "TAG": "{precision}-{{x}}"}, gpus=4)
    assert own == {
        "AMPKIT_PRECISION": "fp16-mixed", "AMPKIT_SEED": "2", "AMPKIT_OUT": str(OUT),
        "AMPKIT_LOG_FILE": f"{OUT}/ampkit_log.jsonl", "USE_AMP": "1", "AMP_DTYPE": "fp16", "GPUS": "4",
        "DATA": f"{OUT}/d", "TAG": "fp16-mixed-{x}",
    }  # fmt: skip
    assert unset == {}
    own, unset = arm_env("bf16-true", 0, OUT, {}, gpus=1)
    assert own["USE_AMP"] == "0" and "AMP_DTYPE" not in own and "GPUS" not in own
    assert unset == {"AMP_DTYPE": None}  # removed from the arm's environment, whatever the caller had


@pytest.mark.parametrize(
    ("command", "argv"),
    [
        (["python", "train.py", "--x"], ["python", "-m", "torch.distributed.run", "--standalone",
                                         "--nproc_per_node=2", "train.py", "--x"]),
        (["python3", "-u", "-m", "pkg.train"], ["python3", "-m", "torch.distributed.run", "--standalone",
                                                "--nproc_per_node=2", "-m", "pkg.train"]),
        (["torchrun", "--nproc_per_node", "2", "t.py"], ["torchrun", "--nproc_per_node", "2", "t.py"]),
        (["accelerate", "launch", "t.py"], ["accelerate", "launch", "t.py"]),
        (["python", "-m", "torch.distributed.run", "t.py"], ["python", "-m", "torch.distributed.run", "t.py"]),
        (["bash", "tools/dist_train.sh", "cfg.py"], ["bash", "tools/dist_train.sh", "cfg.py"]),
    ],
)  # fmt: skip
def test_gpus_puts_python_under_torchrun_and_leaves_launchers_alone(
    command: list[str], argv: list[str]
) -> None:
    assert wrap(command, 2)[0] == this_python(argv)
    assert wrap(command, 1)[0] == this_python(command)


def test_a_bare_python_is_the_interpreter_running_ampkit() -> None:
    """``.venv/bin/ampkit compare -- python t.py`` must not pick a PATH python without torch."""
    assert this_python(["python", "t.py"]) == [sys.executable, "t.py"]
    assert this_python(["python3", "-m", "m"]) == [sys.executable, "-m", "m"]
    assert this_python(["/opt/py/bin/python", "t.py"]) == ["/opt/py/bin/python", "t.py"]  # a path is kept
    assert this_python(["bash", "run.sh"]) == ["bash", "run.sh"]


def _log(step: int | None, when: float, **values: float) -> dict[str, Any]:
    return {"step": step, "time": when, "values": values, "source": "ampkit.log"}


def test_step_times_skip_the_warm_up_and_spread_sparse_logging_over_its_steps() -> None:
    # logged every 5 steps: 10 ms per step up to step 10, then 20 ms per step
    records = [_log(s, t, loss=1.0) for s, t in ((5, 0.05), (10, 0.10), (15, 0.20), (20, 0.30))]
    points, source = timeline(records, [], series(records, []))
    figs, window, timed = step_figures(points, warmup=10, source=source)
    assert timed == 10 and window == (0.10, 0.30)
    assert figs["step_time_median_s"]["value"] == pytest.approx(0.02)
    assert "over steps 11-20 (10 steps, warm-up excluded)" in figs["step_time_median_s"]["method"]
    figs, window, timed = step_figures(points, warmup=20, source=source)
    assert window is None and figs["step_time_median_s"]["value"] is None
    assert "warm-up is 20 steps" in figs["step_time_median_s"]["unavailable"]


def test_restarting_step_numbers_are_counted_in_order_and_log_values_win_over_parsed() -> None:
    logged = [_log(1, 1.0, loss=3.0), _log(2, 2.0, loss=2.0), _log(1, 3.0, loss=1.0)]  # a new epoch
    parsed = [{"step": 9, "time": 9.0, "values": {"loss": 99.0, "acc": 0.5}, "source": "stdout"}]
    by_name = series(logged, parsed)
    assert [v for _, _, v in by_name["loss"]] == [3.0, 2.0, 1.0]  # ampkit.log's loss, parsed one ignored
    assert [v for _, _, v in by_name["acc"]] == [0.5]  # a name only the output carried
    points, source = timeline(logged, parsed, by_name)
    assert points == [(1, 1.0), (2, 2.0), (3, 3.0)] and "did not increase" in source
    assert pick_metric(by_name, None)[:2] == ("acc", True)
    assert pick_metric(by_name, "loss")[:2] == ("loss", False)
    assert pick_metric(by_name, "acc:min")[:2] == ("acc", False)
    assert pick_metric(by_name, "f1")[0] is None


@pytest.mark.parametrize(
    ("requested", "proofs", "events", "uses", "names", "status", "flagged"),
    [
        ("bf16-mixed", [("bf16-mixed", "ampkit: precision=bf16-mixed")], [], True, False, "ok", False),
        ("bf16-mixed", [("fp32", "ampkit: precision=fp32")], [], True, False, "mismatch", True),
        ("fp16-mixed", [], [("fp32", "")], True, False, "mismatch", True),
        ("bf16-mixed", [], [], True, False, "not reported", True),  # uses ampkit, said nothing
        ("bf16-mixed", [], [], False, False, "not reported", False),  # plain script: USE_AMP told it
        ("bf16-true", [], [], False, True, "not reported", False),  # {precision} told it
        ("bf16-true", [], [], False, False, "not verifiable", False),  # nothing could tell it
    ],
)
def test_precision_check(requested, proofs, events, uses, names, status, flagged) -> None:  # type: ignore[no-untyped-def]
    check = check_precision(requested, proofs, events, uses_ampkit=uses, names_precision=names)
    assert (check.status, check.flagged) == (status, flagged)
    if status == "mismatch":
        assert check.evidence.startswith(f"requested {requested}, script ran fp32")
    assert (check.warning is not None) == (status == "not verifiable")


def test_log_reader_takes_whole_lines_counts_bad_ones_and_reads_non_finite(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    tail = LogTail(path)
    assert tail.read() == []  # not written yet
    good = {"kind": "log", "step": 1, "time": 5.0, "values": {"loss": "NaN", "acc": 0.5, "tag": "x"}}
    path.write_text(json.dumps(good) + "\nnot json\n" + '{"kind": "log", "step": 2, "time": 6.0, "val')
    got = tail.read()
    assert len(got) == 1 and math.isnan(got[0]["values"]["loss"]) and got[0]["values"]["acc"] == 0.5
    assert "tag" not in got[0]["values"] and tail.invalid == 1
    with open(path, "a") as f:  # the half-written line completes
        f.write(
            'ues": {"loss": 1.5}}\n{"kind": "precision", "time": 7.0, "precision": "fp32", "describe": "d"}\n'
        )
    assert [r["values"] for r in tail.read()] == [{"loss": 1.5}] and tail.precisions == [("fp32", "d")]


def test_output_scanner_reads_groups_proof_lines_and_the_stderr_tail() -> None:
    scanner = OutputScanner(
        [re.compile(r"it (?P<step>\d+) loss=(?P<loss>\S+)"), re.compile(r"acc (?P<acc>\S+)")]
    )
    scanner.feed("INFO ampkit: precision=bf16-mixed autocast=cpu/bfloat16\n", "stderr", 1.0)
    scanner.feed("it 3 loss=0.25 acc 0.9\n", "stdout", 2.0)
    scanner.feed("it 4 loss=oops\n", "stdout", 3.0)
    assert scanner.proofs == [("bf16-mixed", "INFO ampkit: precision=bf16-mixed autocast=cpu/bfloat16")]
    assert scanner.records == [
        {"step": 3, "time": 2.0, "values": {"loss": 0.25, "acc": 0.9}, "source": "stdout"},
        {"step": 4, "time": 3.0, "values": {}, "source": "stdout"},
    ]
    assert scanner.unparsable == {"loss='oops'"} and list(scanner.stderr) == [
        "INFO ampkit: precision=bf16-mixed autocast=cpu/bfloat16"
    ]


class FakeNvml:
    """NVML with two GPUs: GPU 1 runs ``pid`` (512 MiB) and a stranger; energy rises 100 J/s on each."""

    def __init__(self, pid: int):
        self.pid, self.t0 = pid, time.time()

    def nvmlInit(self) -> None: ...

    def nvmlDeviceGetCount(self) -> int:
        return 2

    def nvmlDeviceGetHandleByIndex(self, i: int) -> int:
        return i

    def nvmlDeviceGetComputeRunningProcesses(self, h: int) -> list[Any]:
        if h == 0:
            return [SimpleNamespace(pid=1, usedGpuMemory=9 * 2**30)]
        return [
            SimpleNamespace(pid=self.pid, usedGpuMemory=512 * 2**20),
            SimpleNamespace(pid=2, usedGpuMemory=2**30),
        ]

    def nvmlDeviceGetTotalEnergyConsumption(self, h: int) -> int:
        return int((self.now - self.t0) * 100_000)  # millijoules


def test_gpu_meter_counts_only_the_arms_processes_and_reads_energy_between_two_times() -> None:
    nvml = FakeNvml(pid=4242)
    meter = GpuMeter(nvml)
    for k in range(5):
        nvml.now = nvml.t0 + k
        meter.poll([4242], nvml.now)
    mem = meter.memory_figure(0.1)
    assert mem["value"] == 512 * 2**20 and "GPUs [1]" in mem["method"]
    joules, how = meter.joules_between(nvml.t0 + 1.5, nvml.t0 + 3.5)
    assert joules == pytest.approx(200.0) and "GPU(s) [1]" in how
    assert meter.joules_between(nvml.t0 + 3.0, nvml.t0 + 9.0)[0] is None  # past the last sample


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc")
def test_tree_meter_sees_the_group_and_a_descendant_that_left_it() -> None:
    shell = "sleep 30 & setsid sleep 31 & wait"
    proc = subprocess.Popen(["sh", "-c", shell], start_new_session=True)
    try:
        meter = TreeMeter(proc.pid)
        deadline = time.monotonic() + 10
        while len(meter.poll()) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        pids = tree_pids(proc.pid)
        assert proc.pid in pids and len(pids) == 3, pids
        assert any(os.getpgid(p) != proc.pid for p in pids)  # the setsid one, found as a descendant
        fig = meter.figure(None, 0.05)
        assert fig["value"] > 0 and fig["processes"] == 3
    finally:
        for pid in tree_pids(proc.pid):
            os.kill(pid, signal.SIGKILL)
        proc.wait()


def test_the_example_ablation_file_maps_two_named_command_experiments() -> None:
    from ampkit.study import load_study

    root = Path(__file__).resolve().parents[1]
    experiments = load_study(root / "examples" / "study_commands.toml")
    assert list(experiments) == ["baseline", "loss_weight"]
    exp = experiments["loss_weight"]
    assert exp.precisions == ("fp32", "bf16-mixed") and exp.seeds == (42,) and exp.metric == "acc:max"
    assert exp.env == {"OMP_NUM_THREADS": "2"} and len(exp.parse) == 2
    argv = expand(exp.command or (), "bf16-mixed", 42, OUT, exp.amp_flags)
    assert argv[-4:] == ["--seed", "42", "--out-dir", str(OUT)]
    assert (root / argv[1]).is_file()


def test_command_seeds_that_change_nothing_are_warned_about() -> None:
    from ampkit.study.arms import ArmPlan, arm_entry

    def run(seed: int, curve: list[float]) -> dict[str, Any]:
        return {"status": "measured", "seed": seed, "argv": ["x"], "loss_curve": curve, "warnings": []}

    same = arm_entry(ArmPlan("fp32", True), [run(0, [1.0, 0.5]), run(1, [1.0, 0.5])], expected=2)
    assert any("identical loss curves" in w for w in same["warnings"])
    differ = arm_entry(ArmPlan("fp32", True), [run(0, [1.0, 0.5]), run(1, [1.0, 0.4])], expected=2)
    assert not any("identical" in w for w in differ["warnings"])


def test_steps_read_in_bursts_give_the_window_mean_not_a_median_of_zeros() -> None:
    """Ten lines read together every 10 ms: per-line intervals are ~0 (a median of 0 once gave a 29x
    "speed-up"); the step time is the mean over the window and p90 is unavailable."""
    points = [(s, (s // 10) * 0.010) for s in range(1, 101)]
    figs, window, timed = step_figures(points, warmup=10, source="the time the study read each line")
    assert window is not None and timed == 90
    mean = (window[1] - window[0]) / 90
    assert figs["step_time_median_s"]["value"] == pytest.approx(mean) and mean > 5e-4
    assert "bursts" in figs["step_time_median_s"]["flags"][0]
    assert figs["step_time_p90_s"]["value"] is None
