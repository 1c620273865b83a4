"""The run folder: its file names, claiming it for one run, and writing its files atomically.

Everything written here goes through :mod:`ampkit.fsutil` (temp file beside the target, fsync,
rename), so a full disk or a kill leaves the previous ``metrics.json`` / ``last.pt`` intact. A
write that fails raises :class:`OSError` naming the file it was writing (not its temp file).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..fsutil import remove_stale_temps, write_atomic
from .runlock import run_lock

log = logging.getLogger("ampkit")

CHECKPOINT_NAME = "last.pt"
METRICS_NAME = "metrics.json"
#: Files ampkit train writes in a run folder (their leftover temp files are removed at start).
RUN_FILES = (CHECKPOINT_NAME, METRICS_NAME)


@contextlib.contextmanager
def writing(path: str | os.PathLike[str]) -> Iterator[None]:
    """Re-raise an :class:`OSError` of the body as ``OSError(errno, strerror, path)``."""
    try:
        yield
    except OSError as err:
        if err.filename == str(path) and err.filename2 is None:
            raise
        reason = err.strerror or str(err) or type(err).__name__
        raise OSError(err.errno, reason, str(path)) from err


def write_json(path: Path, data: Any) -> None:
    """``data`` as indented JSON at ``path``, atomically."""
    with writing(path):
        write_atomic(path, json.dumps(data, indent=2))


def remove_leftovers(out: Path) -> list[Path]:
    """Delete the temp files a killed run left beside ``last.pt`` and ``metrics.json`` (one log line)."""
    removed = [p for name in RUN_FILES for p in remove_stale_temps(out, name)]
    if removed:
        names = ", ".join(p.name for p in removed)
        log.info(
            "ampkit: removed %d temporary file(s) left by a killed run in %s: %s", len(removed), out, names
        )
    return removed


@contextlib.contextmanager
def claim_run_folder(out: str | os.PathLike[str] | None, *, main: bool = True) -> Iterator[None]:
    """Hold ``out``'s run lock for the body and clear a killed run's leftovers (the lock holder only).

    ``main`` False (ranks other than 0) takes nothing: one process per run holds the folder.
    """
    if out is None or not main:
        yield
        return
    with run_lock(out) as lock:
        if lock is not None and lock.fd is not None:
            remove_leftovers(Path(out))
        yield
