"""The ``--nproc`` launcher: torchrun's environment per rank, and no hang when a rank fails."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from ampkit.cli import main
from ampkit.engine.launch import LaunchError, launch, worker_env


def python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def test_each_rank_gets_torchruns_variables(tmp_path: Path) -> None:
    code = (
        "import os, pathlib; e = os.environ; "
        f"pathlib.Path(r'{tmp_path}', e['RANK']).write_text("
        "' '.join(e[k] for k in ('RANK', 'LOCAL_RANK', 'WORLD_SIZE', 'MASTER_ADDR', 'MASTER_PORT')))"
    )
    launch(python(code), 3, timeout_s=60)
    seen = [(tmp_path / str(rank)).read_text().split() for rank in range(3)]
    assert [s[:3] for s in seen] == [[str(r), str(r), "3"] for r in range(3)]
    assert len({s[4] for s in seen}) == 1 and seen[0][3] == "127.0.0.1"
    assert worker_env(1, 2, 1234)["MASTER_PORT"] == "1234"


def test_a_failing_rank_stops_the_others_at_once() -> None:
    code = "import os, sys, time; time.sleep(60) if os.environ['RANK'] == '0' else sys.exit(3)"
    began = time.monotonic()
    with pytest.raises(LaunchError, match=r"^rank 1 exited with code 3: stopped the other ranks$"):
        launch(python(code), 2, timeout_s=120)
    assert time.monotonic() - began < 10


def test_a_rank_ignoring_sigterm_is_killed_after_the_grace_period() -> None:
    code = (
        "import os, signal, sys, time\n"
        "if os.environ['RANK'] == '0':\n"
        "    signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)\n"
        "time.sleep(0.5); sys.exit(1)"
    )
    began = time.monotonic()
    with pytest.raises(LaunchError, match="rank 1 exited with code 1"):
        launch(python(code), 2, grace_s=0.5)
    assert time.monotonic() - began < 10


def test_the_overall_timeout_ends_a_job_that_runs_too_long() -> None:
    began = time.monotonic()
    with pytest.raises(LaunchError, match="ran past its 1 s timeout"):
        launch(python("import time; time.sleep(60)"), 2, timeout_s=1)
    assert time.monotonic() - began < 10


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--nproc", "3", "--batch-size", "32"], "--nproc 3 with --batch-size 32"),
        (["--nproc", "0"], "--nproc 0: must be >= 1"),
    ],
)
def test_bad_nproc_is_one_line_exit_2_before_any_launch(
    args: list[str], needle: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert main(["train", "--steps", "1", "--out", str(tmp_path), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and len(err.splitlines()) == 1
