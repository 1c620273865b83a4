"""SIGTERM (a scheduler's stop: SLURM, Kubernetes, systemd) ends a command the way Ctrl-C does.

``ampkit train`` gets a real process (the signal and the exit status are the point): the
``slow_task`` digits run is stopped once its first checkpoint exists. ``compare`` and ``convert``
run in-process, signalled by a timer or by the writer itself; ``ampkit.cli.main`` installs the
handler in the main thread only and puts the previous one back, so a library user keeps theirs.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from proc_state import gone

from ampkit.cli import main
from ampkit.data.shardwriter import ShardWriter
from ampkit.engine.runlock import LOCK_NAME

TESTS = Path(__file__).resolve().parent
PY = sys.executable

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="POSIX signals and /proc")


TRAIN = ["train", "--task", "slow_task:make_task", "--size", "small", "--steps", "400", "--batch-size", "8",
         "--checkpoint-every", "2", "--threads", "1", "--no-progress"]  # fmt: skip


def _stop_line(words: str, out: Path) -> str:
    step = torch.load(out / "last.pt", weights_only=True)["step"]
    assert 0 < step < 400
    return (
        f"ampkit train: {words}; {out / 'last.pt'} (step {step} of 400, precision fp32) kept: "
        "rerun with --resume to continue"
    )


def test_sigterm_stops_train_like_ctrl_c_exit_143_lock_removed_last_pt_kept(tmp_path: Path) -> None:
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(TESTS)}
    proc = subprocess.Popen([PY, "-m", "ampkit", *TRAIN, "--out", str(out)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while not (out / "last.pt").exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert (out / LOCK_NAME).exists(), "the run holds its folder while it trains"
        proc.send_signal(signal.SIGTERM)
        stdout, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 143, err
    assert "Traceback" not in err and stdout == ""  # no summary: the run did not finish
    assert [ln for ln in err.splitlines() if ln.startswith("ampkit train:")] == [
        _stop_line("stopped by SIGTERM", out)
    ]
    assert sorted(p.name for p in out.iterdir()) == ["last.pt"]  # lock removed, no temp file, no metrics


def test_ctrl_c_in_train_says_the_same_with_exit_130(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"

    def interrupt() -> None:
        deadline = time.monotonic() + 60
        while not (out / "last.pt").exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        os.kill(os.getpid(), signal.SIGINT)

    timer = threading.Thread(target=interrupt, daemon=True)
    timer.start()
    code = main([*TRAIN, "--out", str(out)])
    timer.join()
    err = capsys.readouterr().err
    assert code == 130, err
    assert [ln for ln in err.splitlines() if ln.startswith("ampkit train:")] == [
        _stop_line("interrupted", out)
    ]
    assert sorted(p.name for p in out.iterdir()) == ["last.pt"]


def test_cli_puts_back_the_callers_sigterm_handler_and_skips_other_threads(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    seen: list[int] = []

    def mine(signum: int, frame: Any) -> None:
        seen.append(signum)

    previous = signal.signal(signal.SIGTERM, mine)
    try:
        assert main(["train", "--steps", "0", "--out", str(tmp_path / "r")]) == 2
        assert signal.getsignal(signal.SIGTERM) is mine
        os.kill(os.getpid(), signal.SIGTERM)  # the caller's handler runs, not ampkit's
        assert seen == [signal.SIGTERM]
        codes: list[int] = []  # from another thread no handler can be installed: main still runs
        worker = threading.Thread(target=lambda: codes.append(main(["train", "--steps", "0"])))
        worker.start()
        worker.join()
        assert codes == [2] and signal.getsignal(signal.SIGTERM) is mine
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert "--steps 0" in capsys.readouterr().err


#: Writes its pids, then waits; its child (sleep) is in the arm's process group.
HANG = """
import os, subprocess, sys, time
child = subprocess.Popen(["sleep", "60"])
with open(sys.argv[1] + ".tmp", "w") as f:
    f.write(f"{os.getpid()} {child.pid}")
os.replace(sys.argv[1] + ".tmp", sys.argv[1])
time.sleep(60)
"""


def test_sigterm_during_a_command_arm_stops_its_group_and_exits_143(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    hang = tmp_path / "hang.py"
    hang.write_text(textwrap.dedent(HANG))
    pids, out = tmp_path / "pids", tmp_path / "study"

    def terminate() -> None:
        deadline = time.monotonic() + 60
        while not pids.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGTERM)

    timer = threading.Thread(target=terminate, daemon=True)
    timer.start()
    code = main(["compare", "--precisions", "fp32", "--out", str(out), "--", PY, str(hang), str(pids)])
    timer.join()
    err = capsys.readouterr().err
    assert code == 143, err
    assert (
        f"ampkit compare: stopped by SIGTERM: stopped the running arm; wrote what was measured to {out}/"
        in err
    )
    script, sleeper = map(int, pids.read_text().split())
    deadline = time.monotonic() + 10
    while not (gone(script) and gone(sleeper)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert gone(script) and gone(sleeper), "a process of the stopped arm outlived the study"
    assert (out / "results.json").is_file() and '"interrupted": true' in (out / "results.json").read_text()


def test_sigterm_during_convert_keeps_complete_shards_and_no_temporary(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    src, out = tmp_path / "src", tmp_path / "out"
    src.mkdir()
    for name in "abc":
        np.save(src / f"{name}.npy", np.arange(6, dtype=np.float32).reshape(2, 3))
    original = ShardWriter.add

    def add(self: ShardWriter, *args: Any) -> None:
        if self.name == "shard-000001.tar":  # the scheduler's stop lands while shard 1 is written
            os.kill(os.getpid(), signal.SIGTERM)
        original(self, *args)

    monkeypatch.setattr(ShardWriter, "add", add)
    argv = ["convert", str(src), "--out", str(out), "--samples-per-shard", "1", "--quiet"]
    assert main(argv) == 143
    assert capsys.readouterr().err.splitlines() == ["ampkit convert: stopped by SIGTERM"]
    names = sorted(p.name for p in out.iterdir())
    assert names == [".convert.json", "shard-000000.tar"]  # complete shard kept, the torn one removed
    monkeypatch.setattr(ShardWriter, "add", original)
    assert main(argv) == 0  # the same command resumes
    assert sorted(p.name for p in out.iterdir() if p.name.startswith("shard-")) == [
        "shard-000000.tar",
        "shard-000001.tar",
        "shard-000002.tar",
    ]
