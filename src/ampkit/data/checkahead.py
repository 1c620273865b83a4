"""A sample's checksum computed on a helper thread while the caller widens it.

Checking and widening a large sample both read all of its bytes. Done one after the other, the
checksum pass pays for fetching them from memory and the widening reads them again; done at once
on two cores, the checksum (XXH3 releases the GIL) fetches the bytes the widening then finds in
the cache. On a 1.8 MB float16 sample read by index: 0.119 ms one after the other, 0.074 at once
(benchmarks/data_load.py has the end-to-end figure). When the helper has not started on a
sample by the time the widening is done (the other core was busy), the caller checks it itself
instead of waiting (and waits at most :data:`WAIT_S` for one it has started); after a few such
misses the helper rests for :data:`PAUSE` samples, so a machine whose other core is busy checks
in line, as it would without the helper. A sample whose checksum fails is dropped from the
batch after its row was written (its row is never handed out).

Used where it helps: a read of one sample (``ds[i]``, ``get_batch([i])``: the caller waits for
exactly that sample) of at least :data:`MIN_BYTES`, in a process that may run on more than one
CPU and is not a DataLoader worker (workers already keep the cores busy). Not for batches of
several samples: there the hand-overs cost more CPU than the overlap saves in wall time (batches
of 8 such samples: 20% more CPU time for 9% less wall time). One daemon thread per process,
shared by every dataset, started on first use (a forked process starts its own); idle, it holds
no sample bytes.
"""

from __future__ import annotations

import os
import queue
import threading
from typing import Any

from .checksum import mismatch
from .forklock import ForkSafeLock

MIN_BYTES = 1 << 18
"""Smallest sample checked on the helper thread (below, handing it over costs more than it saves)."""
WAIT_S = 2e-3
"""Longest wait for a check the helper has started (a 1.8 MB sample takes it 0.03-0.1 ms; longer
means the helper's core was taken away, and the caller checks the sample itself)."""
MISSES = 4
"""Net misses (the helper had not finished when the widening had) that pause the helper ..."""
PAUSE = 64
"""... for this many samples, checked in line; then the helper is tried again."""


class _Job:
    """One sample to check; whoever claims it first (helper or caller) computes the verdict."""

    __slots__ = ("claim", "done", "entry", "js", "raw", "why")

    def __init__(self, raw: Any, js: Any, entry: dict[str, Any]):
        self.raw, self.js, self.entry = raw, js, entry
        self.claim = threading.Lock()
        self.done = threading.Event()
        self.why: str | None = None

    def verdict(self) -> str | None:
        try:
            return mismatch(self.raw, self.js, self.entry)
        except Exception as err:  # a malformed entry: report it as the sample's damage
            return f"cannot check the sample ({err})"

    def run(self) -> None:
        self.why = self.verdict()
        self.done.set()


def _serve(jobs: queue.SimpleQueue[_Job]) -> None:
    while True:
        _take(jobs.get())  # returns holding nothing: idle, the thread keeps no sample bytes alive


def _take(job: _Job) -> None:
    if job.claim.acquire(blocking=False):  # else the caller got there first
        job.run()


_HELPER: dict[int, queue.SimpleQueue[_Job]] = {}
"""This process's helper thread, by pid: one per process, shared by every dataset (a forked child
starts its own; the parent's thread does not exist there)."""
_HELPER_LOCK = ForkSafeLock()


def _jobs() -> queue.SimpleQueue[_Job]:
    pid = os.getpid()
    with _HELPER_LOCK:
        got = _HELPER.get(pid)
        if got is None:
            _HELPER.clear()
            got = _HELPER[pid] = queue.SimpleQueue()
            threading.Thread(target=_serve, args=(got,), name="ampkit-checksum", daemon=True).start()
    return got


def _spare_cpu() -> bool:
    from torch.utils.data import get_worker_info

    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    return cpus > 1 and get_worker_info() is None


class CheckAhead:
    """Starts a sample's checksum on the helper thread (:meth:`start`); :meth:`result` gives its verdict."""

    def __init__(self) -> None:
        self._pid = -1
        self._use = False
        self._score = 0  # hits minus misses, within [-MISSES, MISSES]
        self._paused = 0  # samples left to check in line before the helper is tried again

    def wanted(self, nbytes: int) -> bool:
        """Whether a sample of ``nbytes`` is checked on the helper thread in this process."""
        if self._pid != os.getpid():
            self._pid, self._use = os.getpid(), _spare_cpu()
        if not self._use or nbytes < MIN_BYTES:
            return False
        if self._paused:
            self._paused -= 1
            return False
        return True

    def start(self, raw: Any, js: Any, entry: dict[str, Any]) -> _Job:
        """Hand the check of one sample to the helper thread (only after :meth:`wanted` said yes)."""
        job = _Job(raw, js, entry)
        _jobs().put(job)
        return job

    def result(self, job: _Job) -> str | None:
        """Why the sample of ``job`` fails its checksum, or None. A job the helper has not started,
        or started and not finished within :data:`WAIT_S` (its core was taken away), is checked here."""
        if job.claim.acquire(blocking=False):  # the helper never started on it
            self._missed()
            job.run()
            job.raw = job.js = None  # the job waits in the helper's queue: let it hold no bytes
        elif not job.done.wait(WAIT_S):  # started long ago and not done: its core was taken away
            self._missed()
            return job.verdict()  # the helper's own verdict, when it comes, goes unread
        else:
            self._score = min(self._score + 1, MISSES)
        return job.why

    def _missed(self) -> None:
        """A miss; after :data:`MISSES` net misses the helper rests for :data:`PAUSE` samples."""
        self._score -= 1
        if self._score <= -MISSES:
            self._score, self._paused = 0, PAUSE

    def __getstate__(self) -> dict[str, Any]:
        return {}  # the thread and its queue stay in their process

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__()  # type: ignore[misc]
