"""Checks of output paths, run before any work: one line naming the flag, the path and what is valid.

``--out`` folders and files must be creatable and writable, not under a file, not a dangling
symlink or a symlink loop, and free of NUL bytes; nothing is created or changed by the checks
(a probe file is made and removed where writability cannot be read from the mode bits).
"""

from __future__ import annotations

import errno
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from ..errors import UsageError


def _nearest_existing(path: Path) -> Path:
    """``path`` or its closest ancestor that exists (``.`` for a relative path with none)."""
    probe = path
    while not probe.exists():
        parent = probe.parent
        if parent == probe:
            break
        probe = parent
    return probe if probe.exists() else Path(".")


def _file_ancestor(path: Path) -> Path | None:
    """The first ancestor of ``path`` that is a file (so nothing can be created under it), if any."""
    for parent in path.parents:
        if parent.exists():
            return None if parent.is_dir() else parent
    return None


def _writable_dir(folder: Path) -> str | None:
    """``None`` when a file can be created in ``folder``, else the reason it cannot."""
    if not os.access(folder, os.W_OK | os.X_OK):
        return "permission denied"
    try:  # os.access says yes to root and knows nothing of read-only mounts: try for real
        fd, probe = tempfile.mkstemp(prefix=".ampkit-probe-", dir=folder)
    except OSError as err:
        return err.strerror or type(err).__name__
    os.close(fd)
    os.unlink(probe)
    return None


def _symlink_problem(path: Path) -> tuple[Path, str] | None:
    """``(link, what)`` for the first component of ``path`` that is a dangling symlink or a loop."""
    for probe in (path, *path.parents):
        if not probe.is_symlink():
            continue
        try:
            os.stat(probe)
        except OSError as err:
            if err.errno == errno.ELOOP:
                return probe, "a symlink loop"
            if err.errno == errno.ENOENT:
                return probe, f"a symlink to a missing target ({os.readlink(probe)})"
    return None


def _plain(path: Path | str, flag: str, valid: str) -> Path:
    """``path`` as a Path, refused when empty, holding a NUL byte, or passing through a broken symlink."""
    text = os.fspath(path)
    if text == "":
        raise UsageError(f"{flag} '': an empty path; valid: {valid}")
    if "\x00" in text:
        raise UsageError(f"{flag} {text!r}: holds a NUL byte; valid: {valid} without NUL bytes")
    found = _symlink_problem(Path(text))
    if found is not None:
        link, what = found
        where = "" if link == Path(text) else f" ({link} on the way)"
        raise UsageError(f"{flag} {text}: is {what}{where}; valid: {valid}")
    return Path(text)


def _looking(path: Path, flag: str, check: Callable[[Path, str], None], valid: str) -> None:
    """Run ``check``; an OSError met while looking at the path (EACCES on a parent) is a UsageError."""
    try:
        check(_plain(path, flag, valid), flag)
    except OSError as err:
        raise UsageError(f"{flag} {path}: {err.strerror or err}; valid: a path ampkit may write") from None


_DIR_VALID = "a writable folder (created if missing)"
_FILE_VALID = "a file path in a writable folder"


def check_out_dir(path: Path, flag: str = "--out") -> None:
    """``path`` is a folder ampkit may write into: an existing writable folder, or creatable.

    Creates nothing (a probe file, if made, is removed at once).
    """
    _looking(path, flag, _check_out_dir, _DIR_VALID)


def check_out_file(path: Path, flag: str = "--out") -> None:
    """``path`` names a file ampkit may write: not a folder, and its folder writable or creatable."""
    _looking(path, flag, _check_out_file, _FILE_VALID)


def _check_out_dir(path: Path, flag: str) -> None:
    valid = _DIR_VALID
    if path.exists() and not path.is_dir():
        raise UsageError(f"{flag} {path}: is a file, not a folder; valid: {valid}")
    blocker = _file_ancestor(path)
    if blocker is not None:
        raise UsageError(f"{flag} {path}: {blocker} is a file, not a folder; valid: {valid}")
    target = path if path.is_dir() else _nearest_existing(path)
    reason = _writable_dir(target)
    if reason is not None:
        raise UsageError(f"{flag} {path}: cannot create files in {target} ({reason}); valid: {valid}")


def _check_out_file(path: Path, flag: str) -> None:
    valid = _FILE_VALID
    if path.is_dir():
        raise UsageError(f"{flag} {path}: is a folder; valid: {valid}, e.g. {path / 'report.json'}")
    if path.exists() and not path.is_file():
        raise UsageError(f"{flag} {path}: not a regular file; valid: {valid}")
    blocker = _file_ancestor(path)
    if blocker is not None:
        raise UsageError(f"{flag} {path}: {blocker} is a file, not a folder; valid: {valid}")
    if path.exists() and not os.access(path, os.W_OK):
        raise UsageError(f"{flag} {path}: cannot write: permission denied; valid: {valid}")
    folder = _nearest_existing(path.parent)
    reason = _writable_dir(folder)
    if reason is not None:
        raise UsageError(f"{flag} {path}: cannot create files in {folder} ({reason}); valid: {valid}")
