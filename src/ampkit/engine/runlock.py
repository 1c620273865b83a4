"""One run per folder: ``out/.ampkit.lock``, held for the whole run.

The mechanism (``flock``, dropped by the kernel when the holder dies however it ends, a lock file
that is never a link or a FIFO, a contender that notices a replaced file) is
:mod:`ampkit.folderlock`, which ``convert``'s output lock uses too. The file names the holder
(pid, start time, command) for the refusal message.

A multi-process run takes the lock once: in the launcher parent (``ampkit train --nproc N``),
whose workers see their parent as the holder, or in rank 0 under an external launcher.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..errors import UsageError
from ..folderlock import FolderLock, fcntl, read_holder

#: The lock file inside a run folder.
LOCK_NAME = ".ampkit.lock"


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


class RunLock(FolderLock):
    """Exclusive use of a run folder; see the module docstring."""

    def __init__(self, folder: str | os.PathLike[str]):
        super().__init__(Path(folder), LOCK_NAME)

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
        info = {"pid": os.getpid(), "started": time.strftime("%Y-%m-%d %H:%M:%S"), "argv": sys.argv}
        if not self.take(_not_a_lock, info):
            holder = read_holder(self.path)
            if holder.get("pid") == os.getppid():
                return  # a worker of the launcher that holds the folder
            self.close(failed=True)
            raise _in_use(self.folder, holder)


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
