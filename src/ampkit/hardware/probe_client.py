"""The planner's side of the probe server: :class:`ProbeServer` starts it and asks it for probes.

``with ProbeServer(task) as server: server.probe(request, timeout_s)`` starts ``python -P -m
ampkit.hardware.probe_server`` (:mod:`.probe_server`: the fork server itself) once, writes one
JSON :class:`~.probe.ProbeRequest` per probe on its stdin and reads its answer lines (a thread
pumps them into a queue, so every wait has a deadline). A probe that outlives its ``timeout_s``
is killed and comes back with status ``timeout``; one that died without reporting gets its
status from the exit (SIGKILL: ``killed``, else ``error``). Where there is no ``fork``
(Windows), each probe is one ``--once`` interpreter instead.
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

from ..pychild import python_module
from .probe import ProbeRequest, ProbeResult

PROTOCOL_HINT = "the probe server stopped"


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
        process = subprocess.Popen(
            server_command(extra), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=server_env()
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


def server_command(extra: list[str]) -> list[str]:
    """The probe server's command line; ``-P``: the current folder is not added to its ``sys.path``."""
    return [*python_module("ampkit.hardware.probe_server"), *extra]


def server_env() -> dict[str, str]:
    """The server's environment: the planner's import path (a user's task module it found) is the
    probes' too, in the planner's order and nothing more (a ``''`` entry is the folder it stands for)."""
    path = [entry or os.getcwd() for entry in sys.path]
    # torch.cuda.is_available() by NVML: a CUDA driver initialised in the server breaks its forks
    return {**os.environ, "PYTHONPATH": os.pathsep.join(path), "PYTORCH_NVML_BASED_CUDA_CHECK": "1"}


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
