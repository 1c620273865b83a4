"""Fresh processes for memory probes, started in milliseconds: a fork server.

``python -m ampkit.hardware.probe_server`` imports torch and ampkit's engine once (and touches no
GPU and runs no op, so forking it is safe), then reads one JSON :class:`~.probe.ProbeRequest` per
line on stdin and forks a child per request. The child measures (:func:`~.probe.measure`) and
writes its result into a pipe; the server reaps it with ``os.wait4`` and answers on stdout with
two JSON lines, ``{"pid": ...}`` when the child starts and ``{"result": ..., "exitcode": ...,
"maxrss": ...}`` when it ended (``maxrss``: the child's own peak from the kernel). Each probe is
thus a fresh process whose peak memory is its own, for the cost of a ``fork``, not of a Python
start-up with torch. Where there is no ``fork`` (Windows), :class:`ProbeServer` starts one
interpreter per probe instead (``--once``), slower and the same otherwise.

The server and its children ignore SIGINT: Ctrl-C reaches the planning process, which stops them.
The planner's side, :class:`ProbeServer` (re-exported here), is in :mod:`.probe_client`.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from typing import IO, Any

from .probe import ProbeRequest
from .probe_client import PROTOCOL_HINT as PROTOCOL_HINT
from .probe_client import ProbeServer as ProbeServer


def _read_all(fd: int) -> bytes:
    chunks: list[bytes] = []
    while True:
        chunk = os.read(fd, 65536)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def _die_with_parent() -> None:
    """Linux: SIGKILL this probe when the server goes (the planner killed, or it crashed)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG = 1
    except (OSError, AttributeError):
        pass


def _child(request: ProbeRequest, fd: int) -> None:
    """In the forked child: stdout onto stderr (the protocol is the server's stdout, and a task's
    prints must not reach ``--json`` either), warnings off (the planner prints a mode's fit
    warnings once), no study log; measure, report, exit."""
    import warnings

    from .probe import measure, report

    _die_with_parent()
    os.dup2(2, 1)
    warnings.simplefilter("ignore")
    os.environ.pop("AMPKIT_LOG_FILE", None)
    code = 0
    try:
        report(fd, measure(request, fd))
    except BaseException:  # a bug in measuring itself: the exit code says it
        code = 1
    os._exit(code)


def _maxrss(usage: Any) -> int:
    return int(usage.ru_maxrss if sys.platform == "darwin" else usage.ru_maxrss * 1024)


def serve(stdin: IO[str], stdout: IO[str]) -> None:
    """The server loop: one request per line, until stdin closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    print(json.dumps({"ready": True}), file=stdout, flush=True)
    for line in stdin:
        request = ProbeRequest(**json.loads(line))
        read_fd, write_fd = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(read_fd)
            _child(request, write_fd)
        os.close(write_fd)
        print(json.dumps({"pid": pid}), file=stdout, flush=True)
        data = _read_all(read_fd)
        os.close(read_fd)
        _, status, usage = os.wait4(pid, 0)
        exitcode = os.waitstatus_to_exitcode(status)
        result = json.loads(data) if data else None
        answer = {"result": result, "exitcode": exitcode, "maxrss": _maxrss(usage)}
        print(json.dumps(answer), file=stdout, flush=True)


def once(line: str) -> None:
    """``--once``: measure one request in this process (no fork here); the answer as :func:`serve`'s."""
    from .probe import measure

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    request = ProbeRequest(**json.loads(line))
    real_stdout = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    result = measure(request).to_dict()
    print(json.dumps({"result": result, "exitcode": 0, "maxrss": None}), file=real_stdout, flush=True)


def preload(task: str | None) -> None:
    """Import what every probe needs once, here: torch (with torch._dynamo, which the optimizer
    step pulls in), ampkit's engine, a built-in task's module, and tinygpt's token corpus (numpy
    only). No torch op runs, so no thread pool exists to break in the forked children."""
    import importlib

    import torch._dynamo  # noqa: F401

    import ampkit.engine.loop
    import ampkit.engine.setup  # noqa: F401
    from ampkit.tasks.registry import BUILTIN

    if task in BUILTIN:
        module = importlib.import_module(BUILTIN[task].partition(":")[0])
        if task == "tinygpt":
            module.markov_corpus(64)


def main(argv: list[str]) -> None:
    if argv == ["--once"]:
        once(sys.stdin.readline())
        return
    preload(argv[1] if len(argv) == 2 and argv[0] == "--task" else None)
    serve(sys.stdin, sys.stdout)


if __name__ == "__main__":
    main(sys.argv[1:])
