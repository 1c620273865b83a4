"""Checkpoints: plain data read with ``weights_only=True``, nothing in a file runs, atomic writes
that survive a full disk, leftovers of a killed run removed, and one run per folder."""

from __future__ import annotations

import builtins
import errno
import json
import logging
import os
import random
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np
import pytest
import torch

from ampkit.cli import main
from ampkit.engine import TrainConfig, train
from ampkit.engine.checkpoint import capture_rng, load_checkpoint, restore_rng, save_atomic
from ampkit.engine.runfolder import write_json
from ampkit.engine.runlock import LOCK_NAME, RunLock
from ampkit.errors import UsageError

SMALL = dict(task="digits", size="small", steps=2, batch_size=8, device="cpu", progress=False)
SRC = Path(__file__).resolve().parents[1] / "src"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ckpt") / "run"
    threads = torch.get_num_threads()
    try:
        train(TrainConfig(out=out, **SMALL))  # type: ignore[arg-type]
    finally:
        torch.set_num_threads(threads)
    return out


@pytest.fixture
def one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


# -- what is saved is plain ------------------------------------------------------------------------
def test_checkpoint_needs_no_allowlisted_global(run_dir: Path) -> None:
    assert torch.serialization.get_unsafe_globals_in_checkpoint(run_dir / "last.pt") == []
    state = torch.load(run_dir / "last.pt", weights_only=True)  # plain torch, no safe_globals
    assert isinstance(state["rng"]["numpy"]["keys"], torch.Tensor)


def test_rng_state_round_trips_through_weights_only(tmp_path: Path) -> None:
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    np.random.standard_normal()  # a cached gaussian is part of NumPy's state
    save_atomic({"rng": capture_rng()}, tmp_path / "rng.pt")
    expected = (random.random(), np.random.standard_normal(), np.random.rand(), torch.rand(1).item())
    random.seed(9), np.random.seed(9), torch.manual_seed(9)
    restore_rng(torch.load(tmp_path / "rng.pt", weights_only=True)["rng"])
    assert (random.random(), np.random.standard_normal(), np.random.rand(), torch.rand(1).item()) == expected


def test_older_checkpoint_with_numpy_array_state_still_loads(run_dir: Path, tmp_path: Path) -> None:
    """Earlier versions saved ``np.random.get_state()`` (an ndarray): three NumPy globals, allowed."""
    state = torch.load(run_dir / "last.pt", weights_only=True)
    np.random.seed(4)
    legacy = np.random.get_state()
    expected = np.random.rand()
    state["rng"]["numpy"] = legacy
    torch.save(state, tmp_path / "old.pt")
    assert torch.serialization.get_unsafe_globals_in_checkpoint(tmp_path / "old.pt")  # it does need them
    loaded = load_checkpoint(tmp_path / "old.pt")
    np.random.seed(0)
    restore_rng(loaded["rng"])
    assert np.random.rand() == expected


# -- nothing in a file runs ------------------------------------------------------------------------
class Payload:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (builtins.exec, (f"open({str(self.marker)!r}, 'w').write('ran')",))


def test_python_api_refuses_a_payload_without_running_it(run_dir: Path, tmp_path: Path) -> None:
    marker = tmp_path / "PWNED"
    state = torch.load(run_dir / "last.pt", weights_only=True)
    state["config"] = Payload(marker)
    torch.save(state, tmp_path / "last.pt")
    with pytest.raises(UsageError) as err:
        load_checkpoint(tmp_path / "last.pt")
    assert not marker.exists()
    message = str(err.value)
    assert message.startswith(f"{tmp_path / 'last.pt'}: not an ampkit checkpoint or it needs code to load")
    assert "(refused: weights_only); it references exec" in message and "\n" not in message


@pytest.mark.parametrize(
    ("name", "content", "needle"),
    [
        ("zero", b"", "empty file (0 bytes)"),
        ("garbage", os.urandom(64) + b"\x80\x02garbage", ""),
        ("text", b"hello, not a checkpoint\n", "not a torch checkpoint"),
    ],
)
def test_python_api_bad_files_are_one_line(tmp_path: Path, name: str, content: bytes, needle: str) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(UsageError) as err:
        load_checkpoint(path)
    assert str(err.value).startswith(f"{path}: ") and needle in str(err.value) and "\n" not in str(err.value)


def test_python_api_foreign_torch_files(tmp_path: Path) -> None:
    for obj, needle in ((torch.ones(2), "holds a Tensor"), ({"state_dict": {}}, "a dict without model")):
        torch.save(obj, tmp_path / "x.pt")
        with pytest.raises(UsageError, match=needle):
            load_checkpoint(tmp_path / "x.pt")


# -- atomic writes on a full disk ------------------------------------------------------------------
class FullDisk:
    """``os.fdopen`` for :mod:`ampkit.fsutil` whose handles on ``names``' temp files fail with ENOSPC
    once ``budget`` bytes were written (a disk filling mid-write)."""

    def __init__(self, names: tuple[str, ...], budget: int = 0):
        self.names, self.budget = names, budget

    def __call__(self, fd: int, mode: str = "r", **kw: Any) -> IO[Any]:
        handle = os.fdopen(fd, mode, **kw)
        target = os.path.basename(os.readlink(f"/proc/self/fd/{fd}"))
        if not any(target.startswith(f".{name}.") for name in self.names):
            return handle
        return _Filling(handle, self.budget)  # type: ignore[return-value]


class _Filling:
    def __init__(self, handle: IO[Any], budget: int):
        self.handle, self.left = handle, budget

    def write(self, data: Any) -> int:
        if len(data) > self.left:
            self.handle.write(data[: self.left])
            self.left = 0
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.left -= len(data)
        return int(self.handle.write(data))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.handle, name)

    def __enter__(self) -> _Filling:
        return self

    def __exit__(self, *exc: object) -> None:
        self.handle.close()


def full_disk(monkeypatch: pytest.MonkeyPatch, *names: str, budget: int = 0) -> None:
    import ampkit.fsutil as fsutil

    class _Os:
        fdopen = FullDisk(names, budget)

        def __getattr__(self, name: str) -> Any:
            return getattr(os, name)

    monkeypatch.setattr(fsutil, "os", _Os())


@pytest.mark.parametrize("budget", [0, 1000])
def test_full_disk_keeps_the_old_files(
    run_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, budget: int
) -> None:
    old_ckpt, old_metrics = (run_dir / "last.pt").read_bytes(), (run_dir / "metrics.json").read_bytes()
    (tmp_path / "last.pt").write_bytes(old_ckpt)
    (tmp_path / "metrics.json").write_bytes(old_metrics)
    full_disk(monkeypatch, "last.pt", "metrics.json", budget=budget)
    with pytest.raises(OSError) as err:
        save_atomic({"model": torch.ones(1000)}, tmp_path / "last.pt")
    assert err.value.errno == errno.ENOSPC and err.value.filename == str(tmp_path / "last.pt")
    with pytest.raises(OSError) as err:
        write_json(tmp_path / "metrics.json", {"history": list(range(1000))})
    assert err.value.errno == errno.ENOSPC and err.value.filename == str(tmp_path / "metrics.json")
    assert (tmp_path / "last.pt").read_bytes() == old_ckpt
    assert (tmp_path / "metrics.json").read_bytes() == old_metrics
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt", "metrics.json"]


@pytest.mark.parametrize("which", ["last.pt", "metrics.json"])
def test_cli_full_disk_is_one_line_exit_1(
    run_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    one_thread: None,
    which: str,
) -> None:
    out = tmp_path / "run"
    out.mkdir()
    for name in ("last.pt", "metrics.json"):
        (out / name).write_bytes((run_dir / name).read_bytes())
    before = (out / which).read_bytes()
    full_disk(monkeypatch, which, budget=100)
    argv = [
        "train",
        "--size",
        "small",
        "--steps",
        "3",
        "--batch-size",
        "8",
        "--no-progress",
        "--out",
        str(out),
    ]
    code = main([*argv, "--resume"])
    err = capsys.readouterr().err
    assert code == 1, err
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if "error" in line]
    assert errors == [errors[-1]] and errors[-1].startswith("ampkit train: error: ")
    assert "No space left on device" in errors[-1] and str(out / which) in errors[-1]
    assert (out / which).read_bytes() == before
    assert sorted(p.name for p in out.iterdir()) == ["last.pt", "metrics.json"]  # no temp file, no lock


# -- leftovers of a killed run ---------------------------------------------------------------------
def test_leftover_temp_files_are_removed_at_start(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, one_thread: None
) -> None:
    out = tmp_path / "run"
    out.mkdir()
    leftovers = [out / ".last.pt.a1b2c3.tmp", out / ".metrics.json.d4e5f6.tmp"]
    for path in leftovers:
        path.write_bytes(b"")
    keep = out / ".notes.txt.x.tmp"  # not a file ampkit train writes: left alone
    keep.write_text("mine")
    with caplog.at_level(logging.INFO, logger="ampkit"):
        train(TrainConfig(out=out, **SMALL))  # type: ignore[arg-type]
    assert not any(p.exists() for p in leftovers) and keep.exists()
    lines = [r.getMessage() for r in caplog.records if "temporary file" in r.getMessage()]
    assert lines == [
        f"ampkit: removed 2 temporary file(s) left by a killed run in {out}: "
        ".last.pt.a1b2c3.tmp, .metrics.json.d4e5f6.tmp"
    ]
    assert json.loads((out / "metrics.json").read_text())["history"][-1]["step"] == 2


# -- one run per folder ----------------------------------------------------------------------------
HOLDER = """
import sys, time, types
for name, path in (("ampkit", sys.argv[1]), ("ampkit.engine", sys.argv[1] + "/engine")):
    mod = types.ModuleType(name)
    mod.__path__ = [path]
    sys.modules[name] = mod
from ampkit.engine.runlock import RunLock
from ampkit.errors import UsageError
try:
    RunLock(sys.argv[2]).acquire()
except UsageError as err:
    print("refused:", err, flush=True)
    sys.exit(2)
print("held", flush=True)
time.sleep(float(sys.argv[3]))
"""


def holder(folder: Path, seconds: float) -> subprocess.Popen[str]:
    """A second process taking ``folder``'s lock with ampkit's RunLock (torch not imported: fast)."""
    return subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(SRC / "ampkit"), str(folder), str(seconds)],
        stdout=subprocess.PIPE,
        text=True,
    )


def test_a_live_holder_refuses_a_second_run_by_pid(tmp_path: Path) -> None:
    out = tmp_path / "run"
    proc = holder(out, 60)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
        with pytest.raises(UsageError) as err:
            train(TrainConfig(out=out, **SMALL))  # type: ignore[arg-type]
        assert str(err.value).startswith(f"{out} is in use by ampkit pid {proc.pid} (started ")
        assert str(err.value).endswith("; wait for it or use another --out")
        assert sorted(p.name for p in out.iterdir()) == [LOCK_NAME]  # nothing of ours was written
    finally:
        proc.kill()
        proc.wait()


def test_a_dead_holder_does_not_keep_the_folder(tmp_path: Path, one_thread: None) -> None:
    out = tmp_path / "run"
    proc = holder(out, 0)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    proc.wait()
    assert json.loads((out / LOCK_NAME).read_text())["pid"] == proc.pid  # left behind, no flock
    train(TrainConfig(out=out, **SMALL))  # type: ignore[arg-type]
    assert not (out / LOCK_NAME).exists()  # released (and removed) by the run that took it over


def test_lock_is_released_after_a_failed_run_and_a_created_folder_removed(tmp_path: Path) -> None:
    out = tmp_path / "new" / "run"
    with pytest.raises(UsageError):
        train(TrainConfig(out=out, **{**SMALL, "task": "no_such_module_xyz:make"}))  # type: ignore[arg-type]
    assert not (tmp_path / "new").exists()
    proc = holder(out, 0)  # the folder is free again
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    proc.wait()


def test_launcher_workers_share_their_parents_lock(tmp_path: Path) -> None:
    """``--nproc``: the parent holds the folder; its workers (children) pass, anyone else is refused."""
    lock = RunLock(tmp_path)
    lock.acquire()
    try:
        child = holder(tmp_path, 0)
        assert child.stdout is not None and child.stdout.readline().strip() == "held"
        assert child.wait() == 0
        with pytest.raises(UsageError, match=f"in use by ampkit pid {os.getpid()}"):
            RunLock(tmp_path).acquire()  # same process, other handle: not our parent, refused
    finally:
        lock.release()
    assert not (tmp_path / LOCK_NAME).exists()


def test_a_file_system_without_locks_warns_and_runs_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import ampkit.engine.runlock as runlock

    def no_locks(fd: int, op: int) -> None:
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

    monkeypatch.setattr(runlock.fcntl, "flock", no_locks)
    lock = RunLock(tmp_path)
    with caplog.at_level(logging.WARNING, logger="ampkit"):
        lock.acquire()
    assert "cannot be locked (No locks available): a second run on it would not be refused" in caplog.text
    lock.release()
    assert not (tmp_path / LOCK_NAME).exists()
