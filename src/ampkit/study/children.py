"""Arm processes that never outlive the study: own process group, parent-death signal, group kill.

Each arm (each rank of a multi-process arm) starts in its own session, so its process group
holds it and anything it starts; stopping the arm signals the whole group. A terminal's Ctrl-C
reaches only the parent, which stops the arms itself (and writes what it has). On Linux the
arm also asks the kernel for SIGKILL when its parent dies (``prctl(PR_SET_PDEATHSIG)``), set
by a few lines that run before the arm imports anything heavy; if the parent is already gone
by then, the arm exits at once. So ``kill -9`` of the parent takes the arms with it. (The
kernel sends that signal when the *thread* that started the arm ends: the study starts its arms
from the thread that runs it and waits for them there.)
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

from ..pychild import python_code

#: Environment variable naming the pid the arm must stay the child of.
PARENT_ENV = "AMPKIT_STUDY_PARENT"


def die_with_parent(signal_name: str, *, forget: bool = False) -> str:
    """Python lines a child runs first: ``signal_name`` when the study dies (Linux ``PR_SET_PDEATHSIG``),
    then exit at once if the study is already gone; ``forget`` drops the variable from the environment."""
    read = "pop" if forget else "get"
    return f"""\
import os, signal, sys
if sys.platform.startswith("linux"):
    import ctypes
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.{signal_name}), 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
want = os.environ.{read}("{PARENT_ENV}", None)
if want and os.getppid() != int(want):
    os._exit(1)  # the study ended before this child armed its death signal
"""


#: Lines the arm's interpreter runs first: the death signal, the orphan check, then the arm module.
BOOT = (
    die_with_parent("SIGKILL")
    + """\
import runpy
runpy.run_module("ampkit.study.arm", run_name="__main__", alter_sys=True)
"""
)
#: Lines of an arm's stderr kept with a failure (the table, report.md and results.json show them).
TAIL_LINES = 5
#: Traceback lines that only underline the line above (``^^^^``, ``~~~``): no information of their own.
_MARKERS = re.compile(r"^\s*[\^~]+\s*$")


#: What a signal that ended an arm most likely means (the kernel's OOM killer sends SIGKILL).
_SIGNAL_NOTES = {
    "SIGKILL": "out of memory?",
    "SIGSEGV": "segmentation fault",
    "SIGBUS": "bus error",
    "SIGABRT": "aborted",
    "SIGFPE": "arithmetic fault",
    "SIGILL": "illegal instruction",
    "SIGTERM": "terminated",
    "SIGINT": "interrupted",
    "SIGHUP": "hangup",
    "SIGPIPE": "broken pipe",
    "SIGXCPU": "CPU time limit",
    "SIGXFSZ": "file size limit",
}


def killed_by(signum: int) -> str:
    """``killed by signal 9 (SIGKILL; out of memory?)``: the signal's number, name and likely cause."""
    try:
        name = signal.Signals(signum).name
    except ValueError:
        return f"killed by signal {signum}"
    note = _SIGNAL_NOTES.get(name)
    return f"killed by signal {signum} ({name}{'; ' + note if note else ''})"


def how_it_ended(code: int | None) -> str:
    """``exited with code N`` or ``was killed by signal ...`` for a ``Popen.returncode``."""
    if code is not None and code < 0:
        return f"was {killed_by(-code)}"
    return f"exited with code {code}"


def arm_command(spec_path: Path) -> list[str]:
    """The command line of one arm (or one rank of it); the current folder is not on its ``sys.path``."""
    return [*python_code(BOOT), str(spec_path)]


def start_arm(command: list[str], env: dict[str, str], stderr: IO[str]) -> subprocess.Popen[str]:
    """Start ``command`` in a new session (its own process group) that dies with this process."""
    env = {**env, PARENT_ENV: str(os.getpid()), "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=stderr, text=True, env=env, start_new_session=True
    )


def start_command(command: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    """Start a user's command (through :data:`ampkit.study.command.WRAP`) in a new session, stdin closed,
    stdout and stderr on two byte pipes (a script may print any bytes; lines are decoded leniently)."""
    env = {**env, PARENT_ENV: str(os.getpid()), "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        command,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        start_new_session=True,
    )


def _signal_group(proc: subprocess.Popen[Any], sig: int) -> None:
    try:
        if hasattr(os, "killpg"):
            os.killpg(proc.pid, sig)  # the session leader's pid is its group id
        elif proc.poll() is None:  # no process groups (Windows): the arm itself
            proc.kill()
    except (ProcessLookupError, PermissionError):
        pass


def stop_arms(procs: Sequence[subprocess.Popen[Any]], grace_s: float) -> None:
    """SIGTERM each arm's process group, SIGKILL what is left after ``grace_s``, and reap every arm.

    Groups of arms that already exited are signalled too: a child they left behind goes with them.
    """
    for proc in procs:
        if proc.poll() is None:
            _signal_group(proc, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    for proc in procs:
        try:
            proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
    for proc in procs:
        _signal_group(proc, signal.SIGKILL)
        proc.wait()


def stderr_tail(log_path: Path, lines: int = TAIL_LINES) -> list[str]:
    """The last non-empty ``lines`` of an arm's stderr log (``[]`` when it wrote none)."""
    try:
        text = log_path.read_text(errors="replace")
    except OSError:
        return []
    keep = [ln.rstrip() for ln in text.splitlines() if ln.strip() and not _MARKERS.match(ln)]
    return keep[-lines:]
