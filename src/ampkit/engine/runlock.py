"""One run per folder: ``out/.ampkit.lock``, held with ``fcntl.flock`` for the whole run.

The kernel drops a ``flock`` when its holder exits, however it ends (``kill -9`` included), so a
lock file left by a dead run never blocks the next one: only a live holder refuses a second run.
The file names the holder (pid, start time, command) for the refusal message; it is written in
place, not renamed over, because the lock belongs to the file's inode. On release the holder
removes the file while still holding the lock; a contender that opened the old inode notices the
file was replaced and tries again, so two processes never both believe they hold it.

A multi-process run takes the lock once: in the launcher parent (``ampkit train --nproc N``),
whose workers see their parent as the holder, or in rank 0 under an external launcher.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import stat
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..errors import UsageError
from ..fsutil import read_regular

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: runs are not locked
    fcntl = None  # type: ignore[assignment]

#: The lock file inside a run folder.
LOCK_NAME = ".ampkit.lock"
#: ``flock`` errors of file systems without locks (some network mounts): the run goes on unlocked.
UNSUPPORTED = (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOTSUP)
#: The most bytes of a lock file read for its holder's description.
_HOLDER_MAX = 1 << 16

log = logging.getLogger("ampkit")


def read_holder(path: Path) -> dict[str, Any]:
    """What the holder wrote into the lock file (``{}`` when unreadable, not a regular file or empty)."""
    try:
        data = json.loads(read_regular(path, _HOLDER_MAX).decode("utf-8") or "{}")
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _in_use(folder: Path, holder: dict[str, Any]) -> UsageError:
    pid = holder.get("pid")
    who = f"ampkit pid {pid}" if pid else "another ampkit process"
    since = f" (started {holder['started']})" if holder.get("started") else ""
    return UsageError(f"{folder} is in use by {who}{since}; wait for it or use another --out")


def _not_a_lock(path: Path, what: str) -> UsageError:
    return UsageError(
        f"{path}: {what}, not ampkit's lock file; valid: a regular file or none there (remove it; "
        "ampkit creates its run lock as a regular file)"
    )


def _open_file(path: Path) -> int:
    """``path`` opened (created if missing) for the lock: never through a symbolic link (which could
    point at any file to truncate), never blocking on a FIFO, refused unless a regular file."""
    flags = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags, 0o644)
    except IsADirectoryError:
        raise _not_a_lock(path, "a folder") from None
    except OSError as err:
        if err.errno == errno.ELOOP:  # O_NOFOLLOW met a symbolic link
            raise _not_a_lock(path, "a symbolic link") from None
        if err.errno in (errno.ENXIO, errno.ENODEV, errno.EOPNOTSUPP):  # a socket, a device
            raise _not_a_lock(path, "a device or socket") from None
        raise
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise _not_a_lock(path, "a FIFO, device or socket")
    return fd


def _open_locked(path: Path) -> int | None:
    """An fd holding ``path``'s lock, or None when a live process holds it."""
    assert fcntl is not None
    while True:
        fd = _open_file(path)
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
            now = os.stat(path)
        except FileNotFoundError:
            now = None
        if now is not None and (now.st_ino, now.st_dev) == (mine.st_ino, mine.st_dev):
            return fd
        os.close(fd)  # the holder removed or replaced the file while we waited on the old inode


class RunLock:
    """Exclusive use of a run folder; see the module docstring."""

    def __init__(self, folder: str | os.PathLike[str]):
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self.fd: int | None = None
        self.created: list[Path] = []
        """Folders this lock created (innermost first), removed again when the run is refused."""

    def acquire(self) -> None:
        """Take the lock (creating the folder if needed) or raise :class:`UsageError` naming the holder.

        A holder that is this process's parent (the ``--nproc`` launcher) counts as this run.
        """
        if fcntl is None:
            return
        if self.folder.exists() and not self.folder.is_dir():
            raise UsageError(
                f"{self.folder}: is a file, not a folder; valid: a run folder (created if missing)"
            )
        if not self.folder.is_dir():
            missing = [self.folder, *(p for p in self.folder.parents if not p.exists())]
            self.folder.mkdir(parents=True, exist_ok=True)
            self.created = missing
        fd = _open_locked(self.path)
        if fd is None:
            holder = read_holder(self.path)
            if holder.get("pid") == os.getppid():
                return  # a worker of the launcher that holds the folder
            self.close(failed=True)
            raise _in_use(self.folder, holder)
        self.fd = fd
        info = {
            "pid": os.getpid(),
            "started": time.strftime("%Y-%m-%d %H:%M:%S"),
            "argv": sys.argv,
        }
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps(info).encode("utf-8"))

    def release(self) -> None:
        """Remove the lock file (while holding it) and drop the lock."""
        if self.fd is not None:
            with contextlib.suppress(OSError):
                self.path.unlink()
            os.close(self.fd)
            self.fd = None

    def close(self, failed: bool = False) -> None:
        """:meth:`release`; after a failure, also remove the folders the lock created, if still empty."""
        self.release()
        if failed:
            for folder in self.created:  # rmdir only removes empty ones: a refused run leaves nothing
                try:
                    folder.rmdir()
                except OSError:
                    break


@contextlib.contextmanager
def run_lock(folder: str | os.PathLike[str] | None) -> Iterator[RunLock | None]:
    """Hold ``folder``'s lock for the ``with`` body (no-op for ``None``)."""
    if folder is None:
        yield None
        return
    lock = RunLock(folder)
    lock.acquire()
    failed = True
    try:
        yield lock
        failed = False
    finally:
        lock.close(failed)
