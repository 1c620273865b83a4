"""SIGTERM ends a command the way Ctrl-C does: the same cleanup, one line, exit 128 + 15.

A scheduler (SLURM, Kubernetes, systemd) stops a job with SIGTERM and a grace period before
SIGKILL. While an ``ampkit`` command runs, :func:`stop_signals` turns the first SIGTERM into
:class:`Stopped`, a :class:`KeyboardInterrupt`, so every path that handles Ctrl-C runs as it
does for Ctrl-C: the run lock is released, a study stops its arms and writes what it measured,
``convert`` keeps its complete shards. The command then ends with one line and exit code 143
(130 after Ctrl-C), as a shell reports a process ended by that signal.

The handler is installed only by the command line, only in the main thread (Python delivers
signals there alone), and the previous handler comes back afterwards: code that imports ampkit
as a library keeps its own signal handling.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

#: Signals that stop a command like Ctrl-C (SIGINT already raises KeyboardInterrupt).
STOP_SIGNALS = ("SIGTERM",)


class Stopped(KeyboardInterrupt):
    """A stop signal, raised where Ctrl-C's KeyboardInterrupt would be."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@dataclass
class StopState:
    """Which stop signal arrived while the command ran (None: none, or only Ctrl-C)."""

    signum: int | None = None

    @property
    def name(self) -> str:
        """``SIGTERM``; ``SIGINT`` when no stop signal arrived (the interrupt was Ctrl-C)."""
        return signal.Signals(self.signum).name if self.signum else "SIGINT"

    def exit_code(self) -> int:
        """128 + the signal's number, as a shell reports it: 143 for SIGTERM, 130 for Ctrl-C."""
        return 128 + (self.signum or int(signal.SIGINT))

    def words(self) -> str:
        """``stopped by SIGTERM`` or ``interrupted`` (Ctrl-C)."""
        return f"stopped by {self.name}" if self.signum else "interrupted"


_current = StopState()


def current() -> StopState:
    """The state of the command running now (read by a command that words its own stop line)."""
    return _current


@contextlib.contextmanager
def stop_signals() -> Iterator[StopState]:
    """For the body: the first SIGTERM raises :class:`Stopped` (later ones only wait for the
    cleanup it started); outside the main thread nothing is installed. Handlers are restored after."""
    global _current
    outer, state = _current, StopState()
    _current = state
    installed: dict[int, Any] = {}

    def handler(signum: int, frame: Any) -> None:
        if state.signum is None:
            state.signum = signum
            raise Stopped(signum)

    try:
        if threading.current_thread() is threading.main_thread():
            for name in STOP_SIGNALS:
                number = getattr(signal, name, None)
                if number is not None:
                    installed[number] = signal.signal(number, handler)
        yield state
    finally:
        for number, previous in installed.items():
            signal.signal(number, signal.SIG_DFL if previous is None else previous)
        _current = outer
