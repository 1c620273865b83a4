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
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict
from typing import IO, Any

from .probe import ProbeRequest, ProbeResult

PROTOCOL_HINT = "the probe server stopped"


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


class ProbeServer:
    """The planner's side: ``with ProbeServer() as server: server.probe(request, timeout_s)``."""

    def __init__(self, task: str | None = None) -> None:
        self._task = task
        self._server: subprocess.Popen[str] | None = None
        self._lines: queue.Queue[str] = queue.Queue()
        self._child: int | None = None

    def __enter__(self) -> ProbeServer:
        if hasattr(os, "fork"):
            self._server = self._start(["--task", self._task] if self._task else [])
            self._expect("ready", timeout_s=300)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop_child()
        if self._server is not None:
            self._server.kill()
            self._server.wait()
            for pipe in (self._server.stdin, self._server.stdout):
                if pipe is not None:
                    pipe.close()
            self._server = None

    def _start(self, extra: list[str]) -> subprocess.Popen[str]:
        """The server (or a ``--once`` interpreter), its answer lines read by a thread into a queue."""
        # the planner's import path (a user's task module it found) is the probes' too
        path = [entry or os.getcwd() for entry in sys.path]
        # torch.cuda.is_available() by NVML: a CUDA driver initialised in the server breaks its forks
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(path), "PYTORCH_NVML_BASED_CUDA_CHECK": "1"}
        process = subprocess.Popen(
            [sys.executable, "-m", "ampkit.hardware.probe_server", *extra],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        self._lines = queue.Queue()
        threading.Thread(target=_pump, args=(process.stdout, self._lines), daemon=True).start()
        return process

    def _stop_child(self) -> None:
        if self._child is not None:
            try:
                os.kill(self._child, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            self._child = None

    def _line(self, server: subprocess.Popen[str], deadline: float | None) -> dict[str, Any] | None:
        """The next answer line, or None at the deadline."""
        wait = None if deadline is None else max(0.0, deadline - time.monotonic())
        try:
            line = self._lines.get(timeout=wait)
        except queue.Empty:
            return None
        if not line:
            raise RuntimeError(f"{PROTOCOL_HINT} (exit code {server.wait()})")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def _expect(self, key: str, timeout_s: float) -> dict[str, Any]:
        assert self._server is not None
        answer = self._line(self._server, time.monotonic() + timeout_s)
        if answer is None or key not in answer:
            raise RuntimeError(f"{PROTOCOL_HINT}: no {key!r} within {timeout_s:g} s")
        return answer

    def probe(self, request: ProbeRequest, timeout_s: float) -> ProbeResult:
        """``request`` measured in a fresh process; stopped (status timeout) after ``timeout_s``."""
        began = time.monotonic()
        server = self._server or self._start(["--once"])
        try:
            assert server.stdin is not None
            server.stdin.write(json.dumps(asdict(request)) + "\n")
            server.stdin.flush()
            if self._server is not None:
                self._child = self._expect("pid", timeout_s=60)["pid"]
            answer = self._line(server, began + timeout_s)
            if answer is None:
                self._stop_child()
                if self._server is None:
                    server.kill()
                else:
                    self._line(server, None)  # the server's answer for the killed child
                result = ProbeResult(request.batch, "timeout", reason=f"no result within {timeout_s:g} s")
            else:
                result = _result(request.batch, answer)
            self._child = None  # reaped by the server; on an exception __exit__ kills it
        finally:
            if self._server is None:
                server.kill()
                server.wait()
        result.seconds = time.monotonic() - began
        return result


def _pump(stream: IO[str] | None, lines: queue.Queue[str]) -> None:
    """Every line of ``stream`` into ``lines``; an empty string at its end."""
    assert stream is not None
    for line in stream:
        lines.put(line)
    lines.put("")


def _result(batch: int, answer: dict[str, Any]) -> ProbeResult:
    """The child's own report, or what its exit says when it could not report."""
    exitcode, maxrss = answer.get("exitcode"), answer.get("maxrss")
    if answer.get("result"):
        result = ProbeResult(**answer["result"])
        if result.peak_bytes is None and maxrss:
            result.peak_bytes = maxrss
        return result
    if exitcode == -signal.SIGKILL:
        return ProbeResult(
            batch, "killed", peak_bytes=maxrss, reason="killed by SIGKILL (the system ran out of memory?)"
        )
    return ProbeResult(batch, "error", peak_bytes=maxrss, reason=f"the probe exited with code {exitcode}")


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
