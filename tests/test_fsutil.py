"""The one atomic writer: old content survives a failed write, no temp file stays, modes are kept."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from ampkit import fsutil


def test_a_full_disk_keeps_the_old_file_and_leaves_no_temp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "metrics.json"
    fsutil.write_atomic(target, '{"old": 1}')

    def full(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError, match="No space left"):
        fsutil.write_atomic(target, '{"new": 2}')
    assert target.read_text() == '{"old": 1}'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]


def test_new_files_follow_the_umask_and_rewrites_keep_the_mode(tmp_path: Path) -> None:
    target = tmp_path / "report.md"
    old = os.umask(0o027)
    try:
        fsutil.write_atomic(target, "a")
    finally:
        os.umask(old)
    assert target.stat().st_mode & 0o777 == 0o640
    target.chmod(0o604)
    fsutil.write_atomic(target, "b")
    assert target.stat().st_mode & 0o777 == 0o604 and target.read_text() == "b"


def test_only_text_goes_through_write_atomic(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="valid: 'wb'"), fsutil.atomic_open(tmp_path / "x", "w"):
        pass
    assert list(tmp_path.iterdir()) == []


def test_stale_temps_of_one_name_are_removed(tmp_path: Path) -> None:
    for name in (".last.pt.abc.tmp", ".last.pt.def.tmp", ".other.json.x.tmp", "last.pt"):
        (tmp_path / name).write_bytes(b"")
    removed = fsutil.remove_stale_temps(tmp_path, "last.pt")
    assert sorted(p.name for p in removed) == [".last.pt.abc.tmp", ".last.pt.def.tmp"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.json.x.tmp", "last.pt"]


def _fifo(tmp: Path) -> Path:
    os.mkfifo(tmp / "pipe")
    return tmp / "pipe"


def _folder(tmp: Path) -> Path:
    (tmp / "dir").mkdir()
    return tmp / "dir"


@pytest.mark.parametrize(
    ("make", "error", "words"),
    [
        (_folder, IsADirectoryError, "is a folder"),
        (_fifo, OSError, "not a regular file (a device, FIFO or socket)"),  # returns at once, reads nothing
        (lambda tmp: Path("/dev/null"), OSError, "not a regular file (a device, FIFO or socket)"),
        (lambda tmp: tmp / "missing", FileNotFoundError, "No such file"),
    ],
)
def test_open_regular_refuses_what_is_not_a_regular_file(make, error, words, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    before = len(os.listdir("/proc/self/fd")) if Path("/proc/self/fd").is_dir() else None
    with pytest.raises(error) as caught:
        fsutil.open_regular(make(tmp_path))
    assert words in str(caught.value)
    if before is not None:  # the descriptor of a refused file is closed again
        assert len(os.listdir("/proc/self/fd")) == before


def test_open_regular_gives_the_descriptor_and_size(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"12345")
    fd, info = fsutil.open_regular(tmp_path / "f")
    try:
        assert info.st_size == 5 and os.pread(fd, 5, 0) == b"12345"
    finally:
        os.close(fd)


def _sparse(size: int):  # type: ignore[no-untyped-def]
    def make(tmp: Path) -> Path:
        with open(tmp / "big", "wb") as fh:
            fh.truncate(size)  # sparse: nothing written, nothing to read
        return tmp / "big"

    return make


@pytest.mark.parametrize(
    ("make", "error", "words"),
    [
        (_fifo, OSError, "not a regular file"),  # never blocks, never reads
        (lambda tmp: Path("/dev/zero"), OSError, "not a regular file"),  # endless: never read at all
        (_folder, IsADirectoryError, "is a folder"),
        (
            _sparse(1 << 40),
            fsutil.FileTooLarge,
            "1,099,511,627,776 bytes, more than 1,000",
        ),  # refused from fstat
        (_sparse(1001), fsutil.FileTooLarge, "1,001 bytes, more than 1,000"),
    ],
    ids=["fifo", "dev-zero", "folder", "sparse-1-tib", "one-byte-over"],
)
def test_read_limited_refuses_special_and_oversized_files(make, error, words, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(error, match=words.replace("(", r"\(")):
        fsutil.read_limited(make(tmp_path), 1000)


def test_read_limited_reads_a_file_up_to_its_limit(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"x" * 1000)
    assert fsutil.read_limited(tmp_path / "f", 1000) == b"x" * 1000
    with fsutil.open_binary(tmp_path / "f") as fh:  # blocking again: a regular file reads in full
        assert os.get_blocking(fh.fileno()) and fh.read() == b"x" * 1000


def test_read_regular_reads_up_to_its_limit_and_never_waits_on_a_fifo(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"0123456789")
    assert fsutil.read_regular(tmp_path / "f") == b"0123456789"
    assert fsutil.read_regular(tmp_path / "f", 4) == b"0123"
    with pytest.raises(OSError, match="not a regular file"):
        fsutil.read_regular(_fifo(tmp_path))  # no writer: a blocking read would wait forever
