"""``ampkit train`` / ``evaluate`` from the command line: errors, spellings, kill -9 and resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from cli_cases import Case, run_case

from ampkit.cli import main
from ampkit.engine import TrainConfig, train

TESTS = Path(__file__).parent


def ampkit(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "PYTHONPATH": str(TESTS), **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "ampkit", *args], capture_output=True, text=True, env=full_env, timeout=300
    )


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--precision", "fp32", "--amp"], "conflicting precision flags"),
        (["--precision", "fp33"], "unknown precision 'fp33'; valid: fp64, fp32, tf32"),
        (["--amp-dtype", "int8", "--mixed-precision"], "unknown --amp_dtype 'int8'; valid: fp16, bf16"),
        (["--task", "nosuch"], "unknown task 'nosuch'; valid: digits, tinygpt"),
        (["--steps", "0"], "--steps 0: must be >= 1"),
        (["--bogus"], "unrecognized arguments: --bogus"),
    ],
)
def test_bad_input_is_one_line_exit_2(
    args: list[str],
    needle: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """In-process (the full table of bad input is test_hostile_train.py)."""
    monkeypatch.delenv("USE_AMP", raising=False)
    monkeypatch.delenv("AMP_DTYPE", raising=False)
    case = Case("train", ["train", "--no-progress", "--out", "{tmp}/run", *args], needle=needle)
    run_case(case, tmp_path, capsys, monkeypatch)


def test_dash_underscore_and_legacy_flags(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    code = main(
        ["train", "--gt_dca_mixed_precision", "--gt_dca_amp_dtype", "bf16", "--steps", "2",
         "--batch_size", "8", "--out", str(out), "--no-progress"]
    )  # fmt: skip
    assert code == 0
    err = capsys.readouterr().err
    assert (
        "ampkit: warning: --gt_dca_mixed_precision is deprecated: precision is global now, use --mixed_precision"
        in err
    )
    assert (
        "ampkit: warning: --gt_dca_amp_dtype is deprecated: precision is global now, use --amp_dtype" in err
    )
    assert json.loads((out / "metrics.json").read_text())["precision"] == "bf16-mixed"
    code = main(["train", "--mixed_precision", "--amp-dtype", "fp16", "--size", "small", "--steps", "1",
                 "--batch-size", "8", "--out", str(out), "--no-progress", "--overwrite"])  # fmt: skip
    assert code == 0
    assert json.loads((out / "metrics.json").read_text())["precision"] == "fp16-mixed"


def test_use_amp_environment(tmp_path: Path) -> None:
    proc = ampkit(
        "train",
        "--steps",
        "2",
        "--out",
        str(tmp_path),
        "--no-progress",
        env={"USE_AMP": "1", "AMP_DTYPE": "bf16"},
    )
    assert proc.returncode == 0, proc.stderr
    assert "ampkit: precision=bf16-mixed autocast=cpu/bfloat16" in proc.stderr


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, weights_only=False)["model"]


@pytest.mark.parametrize(
    ("mode", "size"), [("fp32", "default"), ("bf16-mixed", "default"), ("fp16-mixed", "small")]
)
def test_kill_9_then_resume_is_bit_identical(tmp_path: Path, mode: str, size: str) -> None:
    steps, every = 40, 10
    threads = torch.get_num_threads()
    try:
        reference = TrainConfig(
            task="digits", precision=mode, steps=steps, size=size,
            batch_size=32, out=tmp_path / "ref", checkpoint_every=every, threads=1, progress=False,
        )  # fmt: skip
        train(reference)
    finally:
        torch.set_num_threads(threads)
    out = tmp_path / "killed"
    cmd = ["train", "--task", "slow_task:make_task", "--precision", mode, "--size", size, "--steps", str(steps),
           "--batch-size", "32", "--checkpoint-every", str(every), "--threads", "1", "--out", str(out), "--no-progress"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(TESTS)}
    proc = subprocess.Popen([sys.executable, "-m", "ampkit", *cmd], env=env, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not (out / "last.pt").exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.2)  # land the kill somewhere after the first checkpoint, mid-step
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "training finished before it could be killed"
    killed_at = torch.load(out / "last.pt", weights_only=False)["step"]
    assert 0 < killed_at < steps
    resumed = ampkit(*cmd, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert f"resumed from {out / 'last.pt'} at step {killed_at}" in resumed.stderr
    ours, theirs = _weights(out / "last.pt"), _weights(tmp_path / "ref" / "last.pt")
    assert ours.keys() == theirs.keys()
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)
    history = json.loads((out / "metrics.json").read_text())["history"]
    assert [r["step"] for r in history] == list(range(1, steps + 1))


def test_evaluate_uses_checkpoint_precision_by_default(tmp_path: Path) -> None:
    assert (
        main(["train", "--precision", "bf16-true", "--steps", "3", "--out", str(tmp_path), "--no-progress"])
        == 0
    )
    proc = ampkit("evaluate", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert "ampkit: precision=bf16-true" in proc.stdout
    report = json.loads(proc.stdout.split("\n", 1)[1])
    assert report["precision"] == "bf16-true" and 0 <= report["accuracy"] <= 1
    proc = ampkit("evaluate", str(tmp_path / "missing.pt"))
    assert proc.returncode == 2 and "no checkpoint at" in proc.stderr
