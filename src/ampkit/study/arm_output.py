"""What a command arm's script tells the study: ``ampkit.log`` events, ``--parse`` matches, the proof line.

Two sources, read while the arm runs:

- the JSON lines ``ampkit.log`` appends to ``$AMPKIT_LOG_FILE``
  (``{"kind": "log", "step": int|null, "time": float, "values": {name: float}}`` and
  ``{"kind": "precision", "time": float, "precision": "<mode>", "describe": "..."}``), read as
  they grow (:class:`LogTail`);
- every line of the script's stdout and stderr (:class:`OutputScanner`): the ``--parse``
  regexes' named groups (``step`` is the step number, any other group a value) and ampkit's
  proof line ``ampkit: precision=<mode> ...``; a parsed line's time is when the study read it.
"""

from __future__ import annotations

import collections
import json
import math
import re
import threading
from pathlib import Path
from typing import Any

from .children import _MARKERS

Record = dict[str, Any]
#: ampkit's proof line (``Precision.describe()``), anywhere in a line (a logger may prefix it).
PROOF = re.compile(r"ampkit: precision=(?P<mode>[A-Za-z0-9_.-]+)")
#: Lines of stderr kept for a failed arm.
TAIL_LINES = 20
#: The most characters of one output line the ``--parse`` regexes scan (log lines are far shorter).
SCAN_CHARS = 4096


#: How ``ampkit.log`` writes non-finite values (strict JSON has no NaN or Infinity).
NON_FINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


def _number(value: Any) -> float | None:
    if isinstance(value, str):
        return NON_FINITE.get(value)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


class LogTail:
    """Reads the events appended to an ``ampkit.log`` file, complete lines only, as the file grows."""

    def __init__(self, path: Path):
        self.path = path
        self.offset = 0
        self.records: list[Record] = []
        self.precisions: list[tuple[str, str]] = []
        """``(mode, describe)`` of each precision event."""
        self.events = 0
        self.invalid = 0
        self._partial = b""

    def read(self, final: bool = False) -> list[Record]:
        """New ``log`` records since the last call (``final``: also a last line without its newline)."""
        try:
            with open(self.path, "rb") as handle:
                handle.seek(self.offset)
                chunk = handle.read()
        except OSError:
            return []
        self.offset += len(chunk)
        data = self._partial + chunk
        lines = data.split(b"\n")
        self._partial = b"" if final else lines.pop()
        new = []
        for raw in lines:
            if raw.strip():
                got = self._event(raw)
                if got is not None:
                    new.append(got)
        self.records += new
        return new

    def _event(self, raw: bytes) -> Record | None:
        try:
            event = json.loads(raw)
        except ValueError:
            self.invalid += 1
            return None
        if not isinstance(event, dict):
            self.invalid += 1
            return None
        self.events += 1
        when = _number(event.get("time"))
        if event.get("kind") == "precision" and isinstance(event.get("precision"), str):
            self.precisions.append((event["precision"], str(event.get("describe") or "")))
            return None
        if event.get("kind") != "log":
            return None  # a kind this study does not know: kept for later versions, not an error
        step, values = event.get("step"), event.get("values")
        if (step is not None and _number(step) is None) or not isinstance(values, dict) or when is None:
            self.invalid += 1
            return None
        nums = {str(k): v for k, v in ((k, _number(v)) for k, v in values.items()) if v is not None}
        return {
            "step": None if step is None else int(step),
            "time": when,
            "values": nums,
            "source": "ampkit.log",
        }


class OutputScanner:
    """Scans the script's output lines: ``--parse`` regexes, the proof line, the stderr tail.

    :meth:`feed` runs in the threads that read the script's pipes and only queues each line (and
    keeps the stderr tail and proof lines, simple linear scans). The ``--parse`` regexes run when
    :attr:`records` (or :attr:`unparsable`, :meth:`latest_loss`) is read, in the thread reading it:
    the study's main thread, where Ctrl-C and SIGTERM interrupt even a catastrophically
    backtracking regex (Python checks signals inside a match only in the main thread; in a pipe
    reader thread such a match would hold the interpreter for minutes). Each line is scanned up
    to :data:`SCAN_CHARS` characters, which bounds a merely slow (polynomial) regex as well.
    """

    def __init__(self, patterns: list[re.Pattern[str]]):
        self.patterns = patterns
        self._records: list[Record] = []
        self.proofs: list[tuple[str, str]] = []
        """``(mode, line)`` of each proof line."""
        self.ampkit_lines = 0
        self._unparsable: set[str] = set()
        self.stderr = collections.deque(maxlen=TAIL_LINES)  # type: collections.deque[str]
        self._lock = threading.Lock()
        self._pending: collections.deque[tuple[str, str, float]] = collections.deque()

    def feed(self, line: str, stream: str, now: float) -> None:
        """One line of ``stream`` ("stdout"/"stderr"), read at wall-clock time ``now``."""
        text = line.rstrip("\r\n")
        with self._lock:
            if stream == "stderr" and text.strip() and not _MARKERS.match(text):
                self.stderr.append(text)
            proof = PROOF.search(text)
            if proof:
                self.proofs.append((proof["mode"], text.strip()))
            if "ampkit:" in text:
                self.ampkit_lines += 1
        if self.patterns:
            self._pending.append((text[:SCAN_CHARS], stream, now))

    @property
    def records(self) -> list[Record]:
        """``{"step", "time", "values", "source"}`` of each line a ``--parse`` regex matched."""
        self._scan()
        return self._records

    @property
    def unparsable(self) -> set[str]:
        """``name='text'`` of groups that matched text that is not a number."""
        self._scan()
        return self._unparsable

    def _scan(self) -> None:
        """Run the ``--parse`` regexes over the queued lines, in this (the caller's) thread."""
        while self._pending:
            text, stream, now = self._pending.popleft()
            values: dict[str, float] = {}
            step: int | None = None
            for pattern in self.patterns:
                match = pattern.search(text)
                if match is None:
                    continue
                for name, raw in match.groupdict().items():
                    if raw is None:
                        continue
                    try:
                        number = float(raw) if name != "step" else None
                        if name == "step":
                            step = int(float(raw))
                    except (ValueError, OverflowError):
                        self._unparsable.add(f"{name}={raw!r}")
                        continue
                    if number is not None and name not in values:
                        values[name] = number
            if values or step is not None:
                self._records.append({"step": step, "time": now, "values": values, "source": stream})

    def latest_loss(self) -> tuple[int | None, float] | None:
        """The last parsed ``(step, loss)``, for the progress bar."""
        for rec in reversed(self.records):
            loss = rec["values"].get("loss")
            if loss is not None and math.isfinite(loss):
                return rec["step"], loss
        return None


def compile_patterns(patterns: list[str] | tuple[str, ...], where: str) -> list[re.Pattern[str]]:
    """Compile ``--parse`` regexes; each must compile and hold at least one named group."""
    from ..errors import UsageError

    out = []
    for text in patterns:
        try:
            pattern = re.compile(text)
        except re.error as err:
            raise UsageError(
                f"{where}{text!r}: not a regular expression ({err}); "
                r"valid: a Python regex with named groups, e.g. 'step (?P<step>\d+) loss (?P<loss>\S+)'"
            ) from None
        if not pattern.groupindex:
            raise UsageError(
                f"{where}{text!r}: no named group; valid: groups such as (?P<loss>\\S+), (?P<step>\\d+), "
                "(?P<acc>[\\d.]+)"
            )
        out.append(pattern)
    return out
