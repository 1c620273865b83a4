"""``evaluate``, ``analyze``, ``doctor``, ``verify`` and ``export`` on bad input: one line, exit 2,
nothing created, before any work (no checkpoint loaded, no step taken, no probe measured).

Corrupt and foreign checkpoints are in the checkpoint tests; these rows are the command lines.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch
from cli_cases import Case, params, run_case

ANALYZE = ["analyze", "--size", "small", "--steps", "2", "--batch-size", "8", "--no-progress"]


def a_file(name: str, data: bytes = b"not a folder\n") -> Callable[[Path], None]:
    def setup(tmp: Path) -> None:
        (tmp / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp / name).write_bytes(data)

    return setup


def a_folder(name: str) -> Callable[[Path], None]:
    def setup(tmp: Path) -> None:
        (tmp / name).mkdir(parents=True)

    return setup


def _no_cuda(case: Case) -> list[Case]:
    return [] if torch.cuda.is_available() else [case]


#: A file named last.pt: the path checks pass, so a bad --device is refused before it is read.
CKPT = a_file("run/last.pt", b"never read\n")

EVALUATE = [
    Case(
        "evaluate-missing-folder",
        ["evaluate", "{tmp}/nothing"],
        needle="no checkpoint at {tmp}/nothing (no such file or folder); valid: a last.pt written by ampkit train",
    ),
    Case(
        "evaluate-missing-file",
        ["evaluate", "{tmp}/missing.pt"],
        needle="(no such file or folder)",
    ),
    Case(
        "evaluate-folder-without-last-pt",
        ["evaluate", "{tmp}/run"],
        needle="no checkpoint at {tmp}/run/last.pt (the folder holds no last.pt)",
        setup=a_folder("run"),
    ),
    Case(
        "evaluate-last-pt-is-a-folder",
        ["evaluate", "{tmp}/run"],
        needle="(last.pt is not a file)",
        setup=a_folder("run/last.pt"),
    ),
    Case(
        "evaluate-under-a-file",
        ["evaluate", "{tmp}/taken/last.pt"],
        needle="({tmp}/taken is a file, not a folder)",
        setup=a_file("taken"),
    ),
    Case(
        "evaluate-device-garbage",
        ["evaluate", "{tmp}/run", "--device", "gpu0"],
        needle="--device gpu0: unknown",
        setup=CKPT,
    ),
    *_no_cuda(
        Case(
            "evaluate-device-cuda",
            ["evaluate", "{tmp}/run", "--device", "cuda"],
            needle="no CUDA device here",
            setup=CKPT,
        )
    ),
    Case("evaluate-no-argument", ["evaluate"], needle="the following arguments are required: checkpoint"),
]

ANALYZE_CASES = [
    Case(
        "analyze-out-is-a-folder",
        [*ANALYZE, "--out", "{tmp}/reports"],
        needle="--out {tmp}/reports: is a folder; valid: a file path in a writable folder",
        setup=a_folder("reports"),
    ),
    Case(
        "analyze-out-under-a-file",
        [*ANALYZE, "--out", "{tmp}/taken/report.json"],
        needle="{tmp}/taken is a file, not a folder",
        setup=a_file("taken"),
    ),
    Case("analyze-steps-0", [*ANALYZE, "--steps", "0"], needle="--steps 0: must be >= 1"),
    Case("analyze-lr-nan", [*ANALYZE, "--lr", "nan"], needle="--lr nan: must be a finite number > 0"),
    Case("analyze-lr-negative", [*ANALYZE, "--lr", "-0.1"], needle="--lr -0.1: must be a finite number > 0"),
    Case("analyze-threads-0", [*ANALYZE, "--threads", "0"], needle="--threads 0: must be >= 1"),
    Case("analyze-batch-size-0", [*ANALYZE, "--batch-size", "0"], needle="--batch-size 0: must be >= 1"),
    Case(
        "analyze-batch-beyond-the-task",
        [*ANALYZE, "--batch-size", "100000"],
        needle="--batch-size 100000: larger than the",
    ),
    Case("analyze-seed-negative", [*ANALYZE, "--seed", "-2"], needle="--seed -2: must be a whole number"),
    Case(
        "analyze-device-garbage", [*ANALYZE, "--device", "cuda:x"], needle="--device cuda:x: unknown device"
    ),
    *_no_cuda(Case("analyze-device-cuda", [*ANALYZE, "--device", "cuda"], needle="no CUDA device here")),
    Case("analyze-task-unknown", [*ANALYZE, "--task", "nosuch"], needle="unknown task 'nosuch'"),
    Case(
        "analyze-task-raises",
        [*ANALYZE, "--task", "hw_cli_raises:make"],
        needle="importing 'hw_cli_raises' failed: ValueError: bad module",
        setup=a_file("hw_cli_raises.py", b"raise ValueError('bad module')\n"),
    ),
    Case("analyze-precision-unknown", [*ANALYZE, "--precision", "fp12"], needle="unknown precision 'fp12'"),
]

DOCTOR = [
    Case(
        "doctor-budget-negative",
        ["doctor", "--budget", "-1"],
        needle="--budget -1: must be a finite number >= 0",
    ),
    Case(
        "doctor-budget-nan",
        ["doctor", "--budget", "nan"],
        needle="--budget nan: must be a finite number >= 0",
    ),
    Case(
        "doctor-budget-inf",
        ["doctor", "--budget", "inf"],
        needle="--budget inf: must be a finite number >= 0",
    ),
    Case("doctor-budget-text", ["doctor", "--budget", "long"], needle="invalid float value: 'long'"),
    Case(
        "doctor-device-garbage",
        ["doctor", "--device", "gpu"],
        needle="--device gpu: unknown device; valid: cpu",
    ),
    *_no_cuda(
        Case("doctor-device-cuda", ["doctor", "--device", "cuda", "--json"], needle="no CUDA device here")
    ),
    Case("doctor-unknown-flag", ["doctor", "--fast"], needle="unrecognized arguments: --fast"),
]

VERIFY = [
    Case("verify-modes-empty", ["verify", "--modes", ",,"], needle="--modes ',,': no mode given; valid:"),
    Case("verify-modes-blank", ["verify", "--modes", ""], needle="no mode given"),
    Case(
        "verify-modes-unknown", ["verify", "--modes", "fp32,fp12"], needle="unknown precision 'fp12'; valid:"
    ),
    Case("verify-device-garbage", ["verify", "--device", "tpu"], needle="--device tpu: unknown device"),
    *_no_cuda(Case("verify-device-cuda", ["verify", "--device", "cuda:1"], needle="no CUDA device here")),
]

EXPORT = [
    Case("export-framework-unknown", ["export", "--to", "keras2", "--precision", "fp16"], needle="unknown framework 'keras2'; valid: accelerate"),
    Case("export-framework-empty", ["export", "--to", "", "--precision", "fp16"], needle="unknown framework ''"),
    Case("export-precision-unknown", ["export", "--to", "accelerate", "--precision", "fp33"], needle="unknown precision 'fp33'"),
    Case("export-format-unknown", ["export", "--to", "accelerate", "--precision", "fp16", "--format", "xml"], needle="invalid choice: 'xml'"),
    Case("export-no-framework", ["export", "--precision", "fp16"], needle="the following arguments are required: --to"),
    Case(
        "export-config-only-without-equivalent",
        ["export", "--to", "deepspeed", "--precision", "fp8-mixed", "--config-only"],
        needle="DeepSpeed has no equivalent of ampkit's fp8-mixed; it has: fp32",
    ),
]  # fmt: skip

CPUS = os.cpu_count() or 1


def checkpoint_with(**config: object) -> Callable[[Path], None]:
    """A setup writing ``run/last.pt``: a well-formed checkpoint whose config has ``config`` edited in."""

    def setup(tmp: Path) -> None:
        from ampkit.engine import TrainConfig

        (tmp / "run").mkdir()
        values = {**TrainConfig(task="digits", size="small").to_dict(), **config}
        state = {"model": {}, "optimizer": {}, "precision": "fp32", "task": "digits", "step": 1,
                 "rng": {}, "config": values, "result": {}}  # fmt: skip
        torch.save(state, tmp / "run" / "last.pt")

    return setup


def npy(tmp: Path) -> None:
    import numpy as np

    np.save(tmp / "a.npy", np.arange(64, dtype=np.float32).reshape(8, 8))


def npy_and_outside_link(tmp: Path) -> None:
    """``a.npy`` and a dangling symlink beside the test's folder (inside it, the row's snapshot,
    which reads every file, could not read it)."""
    npy(tmp)
    Path(f"{tmp}-x").mkdir(exist_ok=True)
    Path(f"{tmp}-x/link").symlink_to(Path(f"{tmp}-x/gone"))


CONVERT = ["convert", "{tmp}/a.npy", "--quiet"]

HOSTILE = [
    # R3: --threads beyond the machine's CPUs (OpenBLAS crashed the process at 100000)
    Case("analyze-threads-huge", [*ANALYZE, "--threads", "100000"],
         needle=f"--threads 100000: more than the {CPUS} CPU(s) of this machine; valid: a whole number in 1..{CPUS}"),
    Case("analyze-steps-huge", [*ANALYZE, "--steps", str(10**20)], needle="too many steps; valid: a whole number in 1..1_000_000_000"),
    Case("analyze-keep-fp32-empty", [*ANALYZE, "--keep-fp32", ""], needle="--keep-fp32 '': an empty selection"),
    Case("analyze-fp8-emulate-under-fp32", [*ANALYZE, "--fp8-emulate"], needle="--fp8-emulate applies to fp8 modes, not fp32"),
    Case("analyze-out-empty", [*ANALYZE, "--out", ""], needle="argument --out: '' is an empty path; valid: a non-empty path"),
    Case("analyze-env-rank", ANALYZE, env={"RANK": "-2"}, needle="RANK='-2': not a whole number >= 0"),
    # misc: a budget that never ends
    Case("doctor-budget-huge", ["doctor", "--budget", "1e12"],
         needle="--budget 1e+12: longer than 600 s; valid: 0..600 seconds (0 skips the measurement)"),
    Case("doctor-budget-just-over", ["doctor", "--budget", "600.5"], needle="--budget 600.5: longer than 600 s"),
    # R9: a hand-edited size in a checkpoint: one line naming the field, before the task is built
    Case("evaluate-checkpoint-size-huge", ["evaluate", "{tmp}/run"], setup=checkpoint_with(size="huge"),
         needle="{tmp}/run/last.pt: config.size is 'huge'; valid: default, small, gpu"),
    Case("evaluate-checkpoint-ct-size-gpu", ["evaluate", "{tmp}/run"], setup=checkpoint_with(task="ct", size="gpu"),
         needle="config.size is 'gpu'; valid: default, small (task ct)"),
    # evaluate checks the flags train and analyze check, alike
    Case("evaluate-keep-fp32-empty", ["evaluate", "{tmp}/run", "--keep-fp32", ""], setup=checkpoint_with(),
         needle="--keep-fp32 '': an empty selection"),
    Case("evaluate-keep-fp32-commas", ["evaluate", "{tmp}/run", "--keep-fp32", ",,"], setup=checkpoint_with(),
         needle="--keep-fp32 ',,': an empty selection"),
    Case("evaluate-keep-fp32-bad-regex", ["evaluate", "{tmp}/run", "--keep-fp32", "re:("], setup=checkpoint_with(),
         needle="--keep-fp32 re:(: bad keep-fp32 regex"),
    Case("evaluate-fp8-emulate-under-fp32", ["evaluate", "{tmp}/run", "--fp8-emulate"], setup=checkpoint_with(),
         needle="--fp8-emulate applies to fp8 modes, not fp32"),
    # convert: R6/R10/NUL --out, misc limits, its environment hook (R8)
    Case("convert-out-empty", [*CONVERT, "--out", ""], setup=npy, needle="argument --out: '' is an empty path"),
    Case("convert-out-nul", [*CONVERT, "--out", "o\x00"], setup=npy, needle="argument --out: 'o\\x00' holds a NUL byte"),
    Case("convert-out-dangling-symlink", [*CONVERT, "--out", "{tmp}-x/link"], setup=npy_and_outside_link,
         needle="--out {tmp}-x/link: is a symlink to a missing target ({tmp}-x/gone); valid: a writable folder"),
    Case("convert-shard-size-1", [*CONVERT, "--out", "o", "--shard-size", "1"], setup=npy,
         needle="--shard-size 1: 1 bytes, less than one sample's tar headers and metadata; valid: at least 4K"),
    Case("convert-shard-size-4095", [*CONVERT, "--out", "o", "--shard-size", "4095"], setup=npy, needle="valid: at least 4K"),
    Case("convert-offset-1e300", [*CONVERT, "--out", "o", "--offset", "1e300"], setup=npy,
         needle="--offset 1e300: beyond float32's range, where offsets are stored; valid: a number within"),
    Case("convert-delay-env-garbage", [*CONVERT, "--out", "o"], setup=npy, env={"AMPKIT_CONVERT_SAMPLE_DELAY": "abc"},
         needle="AMPKIT_CONVERT_SAMPLE_DELAY='abc': not a number of seconds in 0..60"),
    Case("convert-delay-env-negative", [*CONVERT, "--out", "o"], setup=npy, env={"AMPKIT_CONVERT_SAMPLE_DELAY": "-1"},
         needle="AMPKIT_CONVERT_SAMPLE_DELAY='-1'"),
]  # fmt: skip


CASES = EVALUATE + ANALYZE_CASES + DOCTOR + VERIFY + EXPORT + HOSTILE


@pytest.fixture
def task_modules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """``tmp_path`` on ``sys.path``, no bytecode written, task modules forgotten afterwards."""
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    monkeypatch.delenv("USE_AMP", raising=False)
    monkeypatch.delenv("AMP_DTYPE", raising=False)
    yield
    for name in [n for n in sys.modules if n.startswith("hw_cli_")]:
        del sys.modules[name]


@pytest.mark.parametrize("case", params(CASES))
def test_bad_input_is_one_line_exit_2(
    case: Case,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    task_modules: None,
) -> None:
    # needles may name the test's folder
    case = Case(
        case.id, case.argv, case.code, case.needle.format(tmp=tmp_path), case.setup, case.lines, case.env
    )
    run_case(case, tmp_path, capsys, monkeypatch)


def test_analyze_out_write_fault_is_one_line_exit_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A disk fault while writing the report: one line, exit 1, the earlier report intact, no temp file."""
    import errno
    import os

    from ampkit import fsutil

    report = tmp_path / "report.json"
    report.write_text('{"old": true}\n')
    real_fsync = os.fsync

    def no_space(fd: int) -> None:
        real_fsync(fd)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(fsutil.os, "fsync", no_space)
    case = Case(
        "analyze-enospc",
        ["analyze", "--task", "test_numerics_ranges:tiny_grad_task", "--steps", "1", "--batch-size", "4",
         "--device", "cpu", "--no-progress", "--json", "--out", str(report)],
        code=1,
        needle="ampkit analyze: error: No space left on device",
    )  # fmt: skip
    run_case(case, tmp_path, capsys, monkeypatch)
    assert report.read_text() == '{"old": true}\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json"]


def test_checks_api_refuses_without_creating_anything(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The helpers other commands (compare) call directly: one-line UsageErrors, nothing created."""
    from ampkit.cli import checks
    from ampkit.errors import UsageError

    target = tmp_path / "a" / "b" / "run"
    checks.check_out_dir(target)  # creatable: fine, and not created
    checks.check_out_file(tmp_path / "new" / "report.json")
    assert list(tmp_path.iterdir()) == []
    assert checks.check_device(None) == ("cuda" if torch.cuda.is_available() else "cpu")
    assert checks.check_device("cpu") == "cpu"
    checks.check_task("digits", "small", build=True)
    (tmp_path / "hw_cli_api.py").write_text("def make(spec):\n    raise KeyError('no data')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    try:
        checks.check_task("hw_cli_api:make")  # importable and callable: passes without building
        with pytest.raises(UsageError, match=r"the factory raised KeyError: 'no data' \(") as info:
            checks.check_task("hw_cli_api:make", "small", build=True)
    finally:
        sys.modules.pop("hw_cli_api", None)
    assert "\n" not in str(info.value)
    for value, kwargs, needle in [
        (float("nan"), {}, "--x nan: must be a finite number > 0"),
        (-1, {"integer": True}, "--x -1: must be >= 1"),
        (0.0, {}, "--x 0: must be a finite number > 0"),
        (2.5, {"integer": True}, "--x 2.5: must be a whole number >= 1"),
        (True, {"integer": True}, "--x True: not a number"),
        ("ten", {}, "--x 'ten': not a number"),
    ]:
        with pytest.raises(UsageError, match=None) as info:
            checks.check_positive(value, "--x", **kwargs)
        assert str(info.value).startswith(needle), str(info.value)
    checks.check_positive(0, "--x", allow_zero=True, integer=True)
    checks.check_positive(None, "--x")
    with pytest.raises(UsageError, match="--y inf: must be a finite number"):
        checks.check_finite(float("inf"), "--y")
