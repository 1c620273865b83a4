"""An exclusive lock on a folder: a lock file inside it, held with ``fcntl.flock``.

``train``'s run lock (:mod:`ampkit.engine.runlock`), ``convert``'s output lock
(:mod:`ampkit.data.outlock`) and, through the run lock, ``compare`` all hold their folder this
way. The kernel drops a ``flock`` when its holder exits, however it ends (``kill -9`` included),
so a lock file left by a dead run never blocks the next one: only a live holder refuses a second
run. The file names the holder (its pid and what else the caller writes) for the refusal message;
it is written in place, not renamed over, because the lock belongs to the file's inode. On
release the holder removes the file while still holding the lock; a contender that opened the old
inode notices the file was replaced and tries again, so two processes never both believe they
hold it. The lock file is never opened through a symbolic link (which could point at any file to
truncate) and never blocks on a FIFO: anything but a regular file there is refused.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .fsutil import read_regular

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: folders are not locked
    fcntl = None  # type: ignore[assignment]

UNSUPPORTED = (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOTSUP)
"""``flock`` errors of file systems without locks (some network mounts): the run goes on unlocked."""
_HOLDER_MAX = 1 << 16
"""The most bytes of a lock file read for its holder's description."""

Refuse = Callable[[Path, str], Exception]
"""Builds the error for a lock path that holds ``what`` (``"a symbolic link"``, ...) instead of a lock file."""

log = logging.getLogger("ampkit")


def read_holder(path: Path) -> dict[str, Any]:
    """What the holder wrote into the lock file (``{}`` when unreadable, not a regular file or empty)."""
    try:
        data = json.loads(read_regular(path, _HOLDER_MAX).decode("utf-8") or "{}")
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _open_file(path: Path, refuse: Refuse) -> int:
    """``path`` opened (created if missing) for the lock, refused unless a regular file."""
    flags = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags, 0o644)
    except IsADirectoryError:
        raise refuse(path, "a folder") from None
    except OSError as err:
        if err.errno == errno.ELOOP:  # O_NOFOLLOW met a symbolic link
            raise refuse(path, "a symbolic link") from None
        if err.errno in (errno.ENXIO, errno.ENODEV, errno.EOPNOTSUPP):  # a socket, a device
            raise refuse(path, "a device or socket") from None
        raise  # read-only, no permission, full: a fault of the machine
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise refuse(path, "a FIFO, device or socket")
    return fd


def open_locked(path: Path, refuse: Refuse) -> int | None:
    """A descriptor holding ``path``'s lock, or None when a live process holds it."""
    assert fcntl is not None
    while True:
        fd = _open_file(path, refuse)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        except OSError as err:
            if err.errno not in UNSUPPORTED:
                os.close(fd)
                raise
            log.warning(
                "ampkit: warning: %s cannot be locked (%s): a second run on it would not be refused",
                path.parent,
                err.strerror,
            )
            return fd  # held without a lock: the run goes on
        except BaseException:
            os.close(fd)
            raise
        mine = os.fstat(fd)
        try:
            now = os.stat(path, follow_symlinks=False)
        except FileNotFoundError:
            now = None
        if now is not None and (now.st_ino, now.st_dev) == (mine.st_ino, mine.st_dev):
            return fd
        os.close(fd)  # the holder removed or replaced the file while we waited on the old inode


class FolderLock:
    """The lock file ``name`` in ``folder``: :meth:`take`, :meth:`release`, :meth:`close`."""

    def __init__(self, folder: Path, name: str):
        self.folder = folder
        self.path = folder / name
        self.fd: int | None = None
        self.created: list[Path] = []
        """Folders made to hold the lock (innermost first), removed again when the run is refused."""

    def take(self, refuse: Refuse, holder: dict[str, Any]) -> bool:
        """Take the lock and write ``holder`` into it; False when a live process holds it."""
        fd = open_locked(self.path, refuse)
        if fd is None:
            return False
        self.fd = fd
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps(holder).encode("utf-8"))
        return True

    def release(self) -> None:
        """Remove the lock file (while holding it) and drop the lock."""
        if self.fd is not None:
            with contextlib.suppress(OSError):
                self.path.unlink()
            os.close(self.fd)
            self.fd = None

    def close(self, failed: bool = False) -> None:
        """:meth:`release`; after a failure, also remove the folders made for it, where still empty."""
        self.release()
        if failed:
            for folder in self.created:  # rmdir only removes empty ones: a refused run leaves nothing
                try:
                    folder.rmdir()
                except OSError:
                    break
