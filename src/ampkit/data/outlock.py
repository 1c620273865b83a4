"""One ``convert`` per output folder: ``out/.convert.lock``, held for the whole run.

Two runs writing one ``--out`` would clean up each other's unfinished shards and replace each
other's complete ones, and both could report success over a folder neither wrote alone. The lock
is taken before anything in ``--out`` is read for a resume, cleaned or written; a second run is
refused with the holder's pid and changes nothing. The mechanism (``flock``, dropped by the kernel
when the holder dies, a lock file that is never a link or a FIFO) is :mod:`ampkit.folderlock`,
which ``train``'s run lock uses too.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import UsageError
from ..folderlock import FolderLock, fcntl, read_holder

LOCK_NAME = ".convert.lock"
"""The lock file inside ``--out``."""


def _not_a_lock(path: Path, what: str) -> UsageError:
    return UsageError(f"{path}: not a regular file ({what}); valid: remove it (convert's lock file)")


class OutLock(FolderLock):
    """Exclusive use of ``convert``'s output folder; see the module docstring."""

    def __init__(self, folder: Path, made: list[Path]):
        super().__init__(folder, LOCK_NAME)
        self.created = made  # deepest first: made by the caller's plan, removed when the run is refused

    def acquire(self) -> None:
        """Create the folder if needed and take the lock, or raise :class:`UsageError` naming the holder."""
        if fcntl is None:
            return
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            taken = self.take(_not_a_lock, {"pid": os.getpid()})
        except BaseException:
            self.close(failed=True)
            raise
        if not taken:
            pid = read_holder(self.path).get("pid")
            self.close(failed=True)
            who = f"pid {pid}" if isinstance(pid, int) and not isinstance(pid, bool) else "pid unknown"
            raise UsageError(
                f"{self.folder} is being written by another convert ({who}); "
                "valid: wait for it, or another --out"
            )
