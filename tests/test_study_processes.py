"""``ampkit compare`` with real arm processes: failures reach the exit code, and no arm outlives its study.

Signals need a real parent: those tests start ``python -m ampkit compare`` on a task whose
first batch never comes (``failing_task:make_task_stuck``: the arm writes nothing, so no broken
pipe can end it when the parent goes), find its arm in /proc, signal the parent and watch the
arm go. Arms find the tests' task modules through PYTHONPATH.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from ampkit.cli import main
from ampkit.hardware import device_capabilities
from ampkit.study import plan_arms

TESTS = Path(__file__).resolve().parent
SMALL = ["--size", "small", "--batch-size", "8", "--steps", "3", "--warmup-steps", "1", "--device", "cpu"]

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")


def _stat(pid: int) -> list[str] | None:
    """Fields of /proc/PID/stat after the command name (state first), or None when gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text.rsplit(")", 1)[1].split()


def alive(pid: int) -> bool:
    """Running (a zombie waiting for a reaper counts as gone: it runs no code and holds no memory)."""
    fields = _stat(pid)
    return fields is not None and fields[0] not in ("Z", "X")


def arms_of(parent: int) -> list[int]:
    """Pids of the study arms whose parent is ``parent``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat(int(entry.name))
            if fields is not None and int(fields[1]) == parent:
                try:
                    cmdline = (entry / "cmdline").read_bytes()
                except OSError:
                    continue
                if b"ampkit.study.arm" in cmdline:
                    found.append(int(entry.name))
    return found


def gone_within(pid: int, seconds: float) -> bool:
    """Whether ``pid`` stops within ``seconds``; one that does not is killed here (the test failed)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not alive(pid):
            return True
        time.sleep(0.05)
    if alive(pid):
        os.kill(pid, signal.SIGKILL)
        return False
    return True


def start_study(out: Path) -> tuple[subprocess.Popen[str], int]:
    """A study whose single arm is stuck for minutes; returns the parent and its arm's pid."""
    cmd = [sys.executable, "-m", "ampkit", "compare", "--task", "failing_task:make_task_stuck", "--precisions", "fp32",
           *SMALL, "--steps", "5000", "--out", str(out)]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(TESTS)}
    parent = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and parent.poll() is None:
        arms = arms_of(parent.pid)
        if arms:
            return parent, arms[0]
        time.sleep(0.05)
    parent.kill()
    raise AssertionError(f"no arm started: {parent.communicate()[1]}")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_an_interrupted_study_stops_its_arm_and_writes_what_it_has(tmp_path: Path, sig: int) -> None:
    parent, arm = start_study(tmp_path)
    assert os.getpgid(arm) == arm != os.getpgid(parent.pid), "the arm runs in its own process group"
    time.sleep(0.5)  # let it get going
    parent.send_signal(sig)
    try:
        _, err = parent.communicate(timeout=30)
    finally:
        parent.kill()
    assert gone_within(arm, 3.0), f"arm {arm} still running after the study stopped"
    assert parent.returncode == 128 + sig, err  # 130 after Ctrl-C, 143 after SIGTERM, as a shell reports them
    stopped = "interrupted" if sig == signal.SIGINT else "stopped by SIGTERM"
    assert f"ampkit compare: {stopped}: stopped the running arm" in err and "Traceback" not in err
    study = json.loads((tmp_path / "results.json").read_text())
    assert study["interrupted"] is True
    assert study["arms"][0]["status"] == "interrupted" and study["arm_order"][0]["pid"] == arm
    assert "interrupted" in (tmp_path / "report.md").read_text()


def test_kill_9_of_the_study_takes_its_arm_along(tmp_path: Path) -> None:
    parent, arm = start_study(tmp_path)
    time.sleep(0.5)
    parent.kill()  # SIGKILL: the parent runs no cleanup at all
    parent.wait()
    assert gone_within(arm, 3.0), f"arm {arm} outlived its killed parent"


def test_a_failed_arm_is_exit_1_with_its_stderr_tail_everywhere(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Seed 0 trains, seed 1's data pipeline raises: exit 1, every output written, the failure shown."""
    monkeypatch.setenv("PYTHONPATH", str(TESTS))
    argv = ["compare", "--task", "failing_task:make_task_seed1", "--precisions", "fp16-mixed", "--seeds", "0,1",
            *SMALL, "--out", str(tmp_path)]  # fmt: skip
    assert main(argv) == 1
    out, err = capsys.readouterr()
    for name in ("results.json", "results.csv", "report.md", "loss_curves.png"):
        assert (tmp_path / name).stat().st_size > 0, name
    arm = json.loads((tmp_path / "results.json").read_text())["arms"][0]
    assert arm["status"] == "failed" and [r["status"] for r in arm["runs"]] == ["measured", "failed"]
    assert arm["reason"] == "seed 1: BatchError: shard for micro-batch 0 is unreadable"
    tail = arm["stderr_tail"]
    assert 1 < len(tail) <= 5 and any("failing_task.BatchError: shard for micro-batch 0" in ln for ln in tail)
    assert arm["log"] == "arms/fp16-mixed-seed1.log" and (tmp_path / arm["log"]).exists()
    report = (tmp_path / "report.md").read_text()
    assert "fp16-mixed: failed: seed 1: BatchError" in report and all(ln in report for ln in tail)
    assert "fp16-mixed: failed: seed 1: BatchError" in out and all(f"| {ln}" in out for ln in tail)
    assert "fp16-mixed-seed0: 1 process, pid" in out and "fp16-mixed-seed1: 1 process, pid" in out
    errors = [ln for ln in err.splitlines() if "error:" in ln]
    assert errors == [f"ampkit compare: error: 1 of 1 arms failed: fp16-mixed ({arm['reason']}); "
                      f"see {tmp_path}/report.md"]  # fmt: skip
    # the fit warning of each arm reaches the console once, named after the arm
    fit = plan_arms(["fp16-mixed"], device_capabilities("cpu"))[0].warnings
    for label in ("fp16-mixed-seed0", "fp16-mixed-seed1"):
        warned = [ln for ln in out.splitlines() if ln.startswith(f"{label}: warning:")]
        assert warned == [f"{label}: warning: {w}" for w in fit]


def test_an_arm_out_of_memory_is_one_line_without_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """tinygpt's endless stream cannot refuse a batch by its sample count: the arm's allocation
    failure becomes its reason, one line naming the batch size, and no traceback reaches the console."""
    argv = ["compare", "--task", "tinygpt", "--precisions", "fp32", "--batch-size", "100000000000",
            "--steps", "3", "--warmup-steps", "1", "--out", str(tmp_path)]  # fmt: skip
    assert main(argv) == 1
    out, err = capsys.readouterr()
    arm = json.loads((tmp_path / "results.json").read_text())["arms"][0]
    want = "out of memory (tried to allocate 800.0 GB) at --batch-size 100000000000"
    assert arm["status"] == "failed" and arm["reason"] == want
    assert "Traceback" not in out + err and f"ampkit arm: {want}" in out
    assert f"arms failed: fp32 ({want})" in err


# -- a trap put at an arm's log path while the study runs -------------------------------------------
def _reader(log: Path, outside: Path) -> int:
    """A FIFO that a reader holds open: an open for writing would succeed, and write into it."""
    os.mkfifo(log)
    return os.open(log, os.O_RDONLY | os.O_NONBLOCK)


# (id, make(log path, a folder outside the study) -> an fd to close or None, what the reason says)
LOG_TRAPS = [
    ("fifo", lambda log, x: os.mkfifo(log), "a FIFO or socket, not a regular file"),
    ("fifo-with-a-reader", _reader, "not a regular file (a device, FIFO or socket)"),
    ("symlink-to-a-file", lambda log, x: log.symlink_to(x / "victim"), "a symlink (not followed)"),
    ("dangling-symlink", lambda log, x: log.symlink_to(x / "created"), "a symlink (not followed)"),
    ("hard-link", lambda log, x: os.link(x / "victim", log), "a hard link (2 names) to a file it would empty"),
    ("folder", lambda log, x: log.mkdir(), "Is a directory"),
]  # fmt: skip
ARM_KINDS = {
    "task": ["compare", "--task", "digits", "--precisions", "fp32", *SMALL, "--out", "{out}"],
    "command": ["compare", "--device", "cpu", "--precisions", "fp32", "--out", "{out}", "--", sys.executable, "-c",
                "print(1)"],
}  # fmt: skip


def _timeout(signum: int, frame: object) -> None:
    raise TimeoutError("the study hung on its arm's log")


@pytest.mark.parametrize("kind", list(ARM_KINDS))
@pytest.mark.parametrize(("make", "what"), [pytest.param(m, w, id=i) for i, m, w in LOG_TRAPS])
def test_a_trap_at_an_arm_log_after_the_check_fails_that_arm_at_once(
    kind: str, make: Any, what: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """A FIFO, symlink, hard link or folder put at ``arms/fp32-seed0.log`` after the up-front check
    (``check_arm_files`` is wrapped to plant it): the arm fails with the reason, no process starts,
    nothing blocks, and nothing is written where a link points."""
    from ampkit.study import outfolder

    monkeypatch.chdir(tmp_path)
    out, outside = tmp_path / "study", tmp_path / "x"
    outside.mkdir()
    (outside / "victim").write_text("keep me\n")
    log = out / "arms" / "fp32-seed0.log"
    fds: list[int] = []
    made: list[int] = []
    real_check = outfolder.check_arm_files

    def check_then_plant(folder: Path, flag: str = "--out") -> None:
        real_check(folder, flag)
        log.parent.mkdir(parents=True)
        fd = make(log, outside)
        fds.extend([fd] if isinstance(fd, int) else [])
        made.append(os.lstat(log).st_mode)

    started: list[object] = []
    monkeypatch.setattr(outfolder, "check_arm_files", check_then_plant)
    monkeypatch.setattr("ampkit.study.processes.start_arm", lambda *a, **k: started.append(a))
    monkeypatch.setattr("ampkit.study.children.start_command", lambda *a, **k: started.append(a))
    before = signal.signal(signal.SIGALRM, _timeout)
    signal.alarm(60)
    try:
        code = main([a.format(out=out) for a in ARM_KINDS[kind]])
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, before)
        for fd in fds:
            os.close(fd)
    stdout, err = capsys.readouterr()
    reason = f"cannot open its log {log}: {what}; valid: a regular file or nothing there (remove it)"
    arm = json.loads((out / "results.json").read_text())["arms"][0]
    assert code == 1 and arm["status"] == "failed" and arm["reason"] == reason, (arm, err)
    assert started == [], "an arm process started"
    assert f"fp32-seed0: failed: {reason}" in stdout
    assert "1 of 1 arms failed" in err and "Traceback" not in stdout + err
    assert (outside / "victim").read_text() == "keep me\n" and not (outside / "created").exists()
    assert made and os.lstat(log).st_mode == made[0]  # still there, as it was made (not replaced)
