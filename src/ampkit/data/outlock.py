"""One ``convert`` per output folder: ``out/.convert.lock``, held with ``fcntl.flock`` for the whole run.

Two runs writing one ``--out`` would clean up each other's unfinished shards and replace each
other's complete ones, and both could report success over a folder neither wrote alone. The lock
is taken before anything in ``--out`` is read for a resume, cleaned or written; a second run is
refused with the holder's pid and changes nothing. As with ``train``'s run lock
(:mod:`ampkit.engine.runlock`, which this mirrors without importing the engine), the kernel drops
a ``flock`` when its holder exits however it ends (``kill -9`` included), so a lock file left by
a dead run blocks nothing; the holder removes the file while still holding the lock, and a
contender that opened the old inode notices the file was replaced and tries again.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import stat
from pathlib import Path

from ..errors import UsageError
from ..fsutil import read_limited

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: conversions are not locked
    fcntl = None  # type: ignore[assignment]

LOCK_NAME = ".convert.lock"
"""The lock file inside ``--out``."""
_UNSUPPORTED = (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOTSUP)
"""``flock`` errors of file systems without locks (some network mounts): the run goes on unlocked."""
_FLAGS = os.O_RDWR | os.O_CREAT | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)


def _holder_pid(path: Path) -> int | None:
    """The pid the holder wrote into the lock file (None: unreadable, not yet written, not a pid)."""
    try:
        found = json.loads(read_limited(path, 4096) or b"{}")
    except (OSError, ValueError):
        return None
    pid = found.get("pid") if isinstance(found, dict) else None
    return pid if isinstance(pid, int) and not isinstance(pid, bool) else None


def _open_locked(path: Path) -> int | None:
    """A descriptor holding ``path``'s lock, or None when a live process holds it."""
    assert fcntl is not None
    while True:
        try:
            fd = os.open(path, _FLAGS, 0o644)  # non-blocking, no symlink: a FIFO here never hangs the run
        except OSError as err:
            if err.errno not in (errno.ELOOP, errno.EISDIR):
                raise  # read-only, no permission, full: a fault of the machine
            raise UsageError(f"{path}: {err.strerror}; valid: remove it (convert's lock file)") from None
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise UsageError(f"{path}: not a regular file; valid: remove it (convert's lock file)")
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        except OSError as err:
            if err.errno not in _UNSUPPORTED:
                os.close(fd)
                raise
            return fd  # a file system without locks: the run goes on unlocked
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
        os.close(fd)  # the holder removed the file while we waited on the old inode


class OutLock:
    """Exclusive use of ``convert``'s output folder; see the module docstring."""

    def __init__(self, folder: Path, made: list[Path]):
        self.folder = folder
        self.path = folder / LOCK_NAME
        self.made = made
        """Folders created to hold the lock (deepest first), removed again when the run is refused."""
        self.fd: int | None = None

    def acquire(self) -> None:
        """Create the folder if needed and take the lock, or raise :class:`UsageError` naming the holder."""
        if fcntl is None:
            return
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            fd = _open_locked(self.path)
        except BaseException:
            self.close(failed=True)
            raise
        if fd is None:
            pid = _holder_pid(self.path)
            self.close(failed=True)
            who = f"pid {pid}" if pid is not None else "pid unknown"
            raise UsageError(
                f"{self.folder} is being written by another convert ({who}); "
                "valid: wait for it, or another --out"
            )
        self.fd = fd
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid()}).encode("utf-8"))

    def close(self, failed: bool = False) -> None:
        """Remove the lock file (while holding it) and drop the lock; after a refusal (``failed``)
        also remove the folders made for it, where still empty."""
        if self.fd is not None:
            with contextlib.suppress(OSError):
                self.path.unlink()
            os.close(self.fd)
            self.fd = None
        if failed:
            for folder in self.made:  # deepest first; a folder someone else filled meanwhile stays
                try:
                    folder.rmdir()
                except OSError:
                    break
