"""One ``convert`` per ``--out`` (H3): a second run, a real second process, is refused with one line
naming the first's pid and changes nothing; the first finishes as if alone; a lock file left by a
dead run blocks nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from ampkit.cli import main
from ampkit.data.convert import DELAY_ENV
from ampkit.data.format import load_manifest, read_index, read_sample
from ampkit.data.outlock import LOCK_NAME


def _sources(folder: Path, scale: float) -> None:
    folder.mkdir()
    for i in range(6):
        np.save(folder / f"s{i}.npy", np.arange(64, dtype=np.float32) * scale + i)


def test_a_second_convert_into_a_folder_being_written_is_refused_and_changes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _sources(tmp_path / "a", 1.01)
    _sources(tmp_path / "b", 2.02)
    out = tmp_path / "out"
    argv = ["convert", "--out", str(out), "--samples-per-shard", "1", "--quiet"]
    env = {**os.environ, DELAY_ENV: "0.3"}  # 6 samples: the first run holds the folder for > 1.5 s
    first = subprocess.Popen(
        [sys.executable, "-m", "ampkit", *argv, str(tmp_path / "a")],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not (out / "shard-000000.tar").exists():  # it holds the lock before it writes anything
            assert first.poll() is None and time.monotonic() < deadline, "the first convert ended early"
            time.sleep(0.05)
        before = sorted(p.name for p in out.iterdir())
        for src in ("a", "b"):  # the same command, and another conversion
            capsys.readouterr()
            assert main([*argv, str(tmp_path / src)]) == 2
            err = capsys.readouterr().err.strip().splitlines()
            assert err == [
                f"ampkit convert: error: {out} is being written by another convert (pid {first.pid}); "
                "valid: wait for it, or another --out"
            ]
        assert set(before) <= {p.name for p in out.iterdir()}  # nothing of the first run's was removed
    finally:
        _, stderr = first.communicate(timeout=120)
    assert first.returncode == 0, stderr
    assert not (out / LOCK_NAME).exists()
    assert main(["verify-shards", str(out), "--quiet"]) == 0
    shards = load_manifest(out)["shards"]
    sources = [
        read_sample(out / s["name"], read_index(out / s["name"])["samples"][0])[1]["source"] for s in shards
    ]
    assert sources == [str(tmp_path / "a" / f"s{i}.npy") for i in range(6)]  # every shard the first run's


def test_a_lock_file_left_by_a_dead_run_blocks_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _sources(tmp_path / "a", 1.0)
    out = tmp_path / "out"
    out.mkdir()
    (out / LOCK_NAME).write_text(json.dumps({"pid": 2**22 + 7}))  # no process holds its flock
    assert main(["convert", str(tmp_path / "a"), "--out", str(out), "--quiet"]) == 0
    assert not (out / LOCK_NAME).exists()


def test_a_refused_convert_removes_the_folder_it_made_for_its_lock(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _sources(tmp_path / "a", 1.0)
    np.save(tmp_path / "a" / "s9.npy", np.array([1.0, np.nan], np.float32))
    out = tmp_path / "new" / "out"
    assert main(["convert", str(tmp_path / "a"), "--out", str(out), "--quiet"]) == 2
    assert "NaN/Inf" in capsys.readouterr().err
    assert not (tmp_path / "new").exists()
