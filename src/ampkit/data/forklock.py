"""A lock that a forked child gets free: :class:`ForkSafeLock`.

A DataLoader forks its workers from the main thread while another thread of the parent may be
inside a read, holding the reader's lock. In the child only the forking thread lives on, so a
plain ``threading.Lock`` copied in the held state is never released and the worker deadlocks on
its first read. Every :class:`ForkSafeLock` is replaced by a fresh lock in a forked child
(``os.register_at_fork``), and a pickled one (a spawned worker's copy) arrives free.
"""

from __future__ import annotations

import os
import threading
import weakref
from typing import Any

_ALL: weakref.WeakSet[ForkSafeLock] = weakref.WeakSet()


class ForkSafeLock:
    """``threading.Lock`` as a context manager, free again in a forked child and after unpickling."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        _ALL.add(self)

    def __enter__(self) -> bool:
        return self._lock.acquire()

    def __exit__(self, *exc: object) -> None:
        self._lock.release()

    def held(self) -> bool:
        """Whether some thread holds it now."""
        return self._lock.locked()

    def __getstate__(self) -> dict[str, Any]:
        return {}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__()  # type: ignore[misc]


def _renew_in_child() -> None:
    for lock in list(_ALL):
        lock._lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_renew_in_child)
