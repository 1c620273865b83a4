"""A study's ``--out`` folder: one ``compare`` at a time, and no trap among the files its arms open.

:func:`study_lock` holds ``out/.ampkit.lock`` for the whole study, the lock ``train`` takes on its
run folder (:mod:`ampkit.engine.runlock`): a second ``compare`` (or a ``train``) into the same
folder is refused with one line, exit 2, before it changes anything, instead of both running
and ``results.json`` keeping only the later one. A lock left by a killed study never blocks
the next (the kernel drops it with its holder).

:func:`check_arm_files` looks at what a previous run (or someone else) left in ``out/arms``, where
the arms open their logs: every entry must be a regular file or a folder; anything else is refused
before the first arm starts. One put there later, while the study runs, is refused by the arm's
own open (:func:`ampkit.fsutil.create_regular`: never blocks on a FIFO nor follows a symlink):
that arm fails with the reason, and the study goes on.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterator
from pathlib import Path

from ..errors import UsageError

#: What an entry's ``lstat`` mode is, for messages.
_KINDS = (
    (stat.S_ISLNK, "a symlink"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


def _kind(mode: int) -> str | None:
    """What a non-regular, non-folder entry is (None for a regular file or a folder)."""
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return None
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def check_arm_files(out: Path, flag: str = "--out") -> None:
    """Refuse ``out/arms`` holding anything but regular files and folders (a FIFO, a symlink...)."""
    arms = out / "arms"
    try:
        info = os.lstat(arms)
    except FileNotFoundError:
        return
    except OSError as err:
        raise UsageError(f"{flag} {out}: cannot look at {arms}: {err.strerror or err}") from None
    what = _kind(info.st_mode)
    if what is not None or not stat.S_ISDIR(info.st_mode):
        raise UsageError(
            f"{flag} {out}: {arms} is {what or 'a file'}, not a folder; valid: remove it, or another {flag}"
        )
    try:
        entries = sorted(os.scandir(arms), key=lambda e: e.name)
    except OSError as err:
        raise UsageError(f"{flag} {out}: cannot list {arms}: {err.strerror or err}") from None
    for entry in entries:
        what = _kind(entry.stat(follow_symlinks=False).st_mode)
        if what is not None:
            raise UsageError(
                f"{flag} {out}: {entry.path} is {what}, where an arm writes its files; "
                f"valid: remove it, or another {flag}"
            )


@contextlib.contextmanager
def study_lock(out: Path) -> Iterator[None]:
    """Hold ``out``'s run lock for the ``with`` body (UsageError naming the holder when taken)."""
    from ..engine.runlock import run_lock

    with run_lock(out):
        yield
