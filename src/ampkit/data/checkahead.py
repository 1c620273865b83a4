"""A sample's checksum computed on a helper thread while the caller widens it.

Checking and widening a large sample both read all of its bytes. Done one after the other, the
checksum pass pays for fetching them from memory and the widening reads them again; done at once
on two cores, the checksum (XXH3 releases the GIL) fetches the bytes the widening then finds in
the cache. On a 1.8 MB float16 sample read by index: 0.119 ms one after the other, 0.074 at once
(benchmarks/data_load.py has the end-to-end figure). A sample whose checksum fails is dropped from
the batch after its row was written (its row is never handed out).

Used where it helps: a read of one sample (``ds[i]``, ``get_batch([i])``: the caller waits for
exactly that sample) of at least :data:`MIN_BYTES`, in a process that may run on more than one
CPU and is not a DataLoader worker (workers already keep the cores busy). Not for batches of
several samples: there the hand-overs cost more CPU than the overlap saves in wall time (batches
of 8 such samples: 20% more CPU time for 9% less wall time). One daemon thread per process,
started on first use (a forked process starts its own).
"""

from __future__ import annotations

import itertools
import os
import queue
import threading
from typing import Any

from .checksum import mismatch

MIN_BYTES = 1 << 18
"""Smallest sample checked on the helper thread (below, handing it over costs more than it saves)."""


def _serve(jobs: queue.SimpleQueue[Any], done: queue.SimpleQueue[Any]) -> None:
    while True:
        token, raw, js, entry = jobs.get()
        try:
            done.put((token, mismatch(raw, js, entry)))
        except Exception as err:  # a malformed entry: report it as the sample's damage
            done.put((token, f"cannot check the sample ({err})"))


def _spare_cpu() -> bool:
    from torch.utils.data import get_worker_info

    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    return cpus > 1 and get_worker_info() is None


class CheckAhead:
    """Starts a sample's checksum on the helper thread (:meth:`start`); :meth:`result` waits for it."""

    def __init__(self) -> None:
        self._pid = -1
        self._use = False
        self._tokens = itertools.count()

    def wanted(self, nbytes: int) -> bool:
        """Whether a sample of ``nbytes`` is checked on the helper thread in this process."""
        if self._pid != os.getpid():
            self._pid, self._use = os.getpid(), _spare_cpu()
            if self._use:
                self._jobs: queue.SimpleQueue[Any] = queue.SimpleQueue()
                self._done: queue.SimpleQueue[Any] = queue.SimpleQueue()
                threading.Thread(
                    target=_serve, args=(self._jobs, self._done), name="ampkit-checksum", daemon=True
                ).start()
        return self._use and nbytes >= MIN_BYTES

    def start(self, raw: Any, js: Any, entry: dict[str, Any]) -> int:
        """Queue the check of one sample (only after :meth:`wanted` said yes); returns its token."""
        token = next(self._tokens)
        self._jobs.put((token, raw, js, entry))
        return token

    def result(self, token: int) -> str | None:
        """Why the sample of ``token`` fails its checksum, or None (results of abandoned checks are skipped)."""
        while True:
            got, why = self._done.get()
            if got == token:
                return why  # type: ignore[no-any-return]

    def __getstate__(self) -> dict[str, Any]:
        return {}  # the thread and its queues stay in their process

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__()  # type: ignore[misc]
