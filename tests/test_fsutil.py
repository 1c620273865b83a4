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
