"""The channel between a study arm and the user's script it runs: environment in, JSON lines out.

``ampkit compare -- COMMAND`` runs COMMAND once per (precision, seed). Each arm process gets:

==================  ==========================================================================
``AMPKIT_PRECISION``  canonical mode of the arm (``fp32``, ``bf16-mixed``, ...); honoured by
                      ``Precision.from_env()`` / ``Precision.from_args()``, ahead of ``USE_AMP``
``AMPKIT_SEED``       the arm's seed; :func:`study_seed` returns it
``AMPKIT_OUT``        the arm's own folder
``AMPKIT_LOG_FILE``   a JSON-lines file in that folder; :func:`log` appends to it
``USE_AMP``,          the seed-001 convention, for scripts that switch AMP themselves
``AMP_DTYPE``
==================  ==========================================================================

The script answers with one JSON object per line in ``AMPKIT_LOG_FILE``:

- ``{"kind": "log", "step": 12, "time": 1733.5, "values": {"loss": 0.25}}`` for each :func:`log`
  call (``step`` is null when not given; ``time`` is ``time.time()``).
- ``{"kind": "precision", "time": ..., "precision": "bf16-mixed", "describe": "ampkit: precision=..."}``
  once per distinct precision a process builds (``Precision.__init__`` calls
  :func:`record_precision`): the proof of what the script really ran.

Values are JSON numbers; non-finite ones are the strings ``"NaN"``, ``"Infinity"``,
``"-Infinity"`` (strict JSON; ``float()`` reads them back). Each line is one ``os.write`` on a
file opened with ``O_APPEND``, so a process killed at any moment leaves only whole lines (a last
line without its newline can only come from a full disk; :func:`read_log` skips it). The log is
the one file ampkit appends to rather than writes atomically: it must survive the writer's death.

Outside a study (``AMPKIT_LOG_FILE`` unset) :func:`log` returns at once: no file, no handle, no
``.item()`` host sync. Under torchrun only rank 0 (``RANK`` unset or ``0``) writes. :func:`log`
never stops a training run: a value it cannot record (a string, a tensor of several elements) or
a log file it cannot write is one warning, and the rest is recorded as usual.
"""

from __future__ import annotations

import json
import math
import operator
import os
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

#: The arm's canonical precision mode.
PRECISION_ENV = "AMPKIT_PRECISION"
#: The arm's seed.
SEED_ENV = "AMPKIT_SEED"
#: The arm's own folder.
OUT_ENV = "AMPKIT_OUT"
#: The JSON-lines file :func:`log` appends to.
LOG_FILE_ENV = "AMPKIT_LOG_FILE"

_lock = threading.Lock()
_fd: int | None = None  # open descriptor of _path, opened on the first line written
_path: str | None = None
_broken: set[str] = set()  # paths that failed to open or write (warned once each)
_warned: set[str] = set()
_seen_precisions: set[tuple[int, str, str]] = set()  # (pid, log file, describe line)


def _warn_once(key: str, message: str) -> None:
    if key not in _warned:
        _warned.add(key)
        from .warn import warn

        warn(message, RuntimeWarning)


def _target() -> str | None:
    """The log file this process writes to now, or None (no study, not rank 0)."""
    path = os.environ.get(LOG_FILE_ENV)
    if not path or os.environ.get("RANK", "0") not in ("", "0"):
        return None
    return path


def _write_line(path: str, record: dict[str, Any]) -> None:
    """Append ``record`` as one line with a single ``os.write`` (a kill never leaves half a line)."""
    global _fd, _path
    data = (json.dumps(record, allow_nan=False, separators=(",", ":")) + "\n").encode()
    with _lock:
        if path in _broken:
            return
        try:
            if _fd is None or _path != path:
                if _fd is not None:
                    os.close(_fd)
                    _fd = None
                _fd, _path = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644), path
            written = os.write(_fd, data)
            if written != len(data):  # a short write only happens on a full disk
                raise OSError(f"wrote {written} of {len(data)} bytes (disk full?)")
        except OSError as err:
            _broken.add(path)
            _warn_once(f"{path}:file", f"ampkit.log: cannot write {path} ({err}); further values are dropped")


def _number(value: Any) -> float | str:
    """``value`` as a JSON number, non-finite values as ``"NaN"`` / ``"Infinity"`` / ``"-Infinity"``."""
    if hasattr(value, "item") and hasattr(value, "numel"):  # a tensor: one host sync here
        if value.numel() != 1:
            raise TypeError(f"a tensor of {value.numel()} elements; log a scalar")
        value = value.detach().item()
    if isinstance(value, str) or not hasattr(value, "__float__"):
        raise TypeError(f"a {type(value).__name__}, not a number")
    number = float(value)
    if math.isnan(number):
        return "NaN"
    if math.isinf(number):
        return "Infinity" if number > 0 else "-Infinity"
    return number


def log(values: Mapping[str, Any], step: int | None = None) -> None:
    """Record ``values`` (name -> float, int or one-element tensor) for the study running this script.

    Same call shape as Accelerate's and W&B's ``log``. Outside a study it does nothing at all;
    inside one it appends a ``{"kind": "log", ...}`` line to ``$AMPKIT_LOG_FILE`` (see the module
    docstring). ``step`` numbers the line (ampkit's own runs count optimizer steps from 1).
    """
    path = _target()
    if path is None:
        return
    if not isinstance(values, Mapping):
        _warn_once(
            f"{path}:mapping",
            f"ampkit.log: values must be a mapping name -> number, not a {type(values).__name__}",
        )
        return
    recorded: dict[str, float | str] = {}
    for name, value in values.items():
        try:
            recorded[str(name)] = _number(value)
        except (TypeError, ValueError, OverflowError) as err:
            _warn_once(f"{path}:value:{name}", f"ampkit.log: {name!r} is {err}; it is not recorded")
    number: int | None = None
    if step is not None:
        try:
            number = operator.index(step)
        except TypeError:
            _warn_once(
                f"{path}:step",
                f"ampkit.log: step must be an integer, not a {type(step).__name__}; recorded as null",
            )
    _write_line(path, {"kind": "log", "step": number, "time": time.time(), "values": recorded})


def record_precision(precision: Any) -> None:
    """Append the ``{"kind": "precision", ...}`` proof line for ``precision`` (a ``Precision``), once per
    distinct ``describe()`` line per process; nothing outside a study."""
    path = _target()
    if path is None:
        return
    line = precision.describe()
    key = (os.getpid(), path, line)
    if key in _seen_precisions:
        return
    _seen_precisions.add(key)
    _write_line(
        path, {"kind": "precision", "time": time.time(), "precision": precision.name, "describe": line}
    )


def study_seed(default: int) -> int:
    """The study arm's seed (``$AMPKIT_SEED``) when a study runs this script, else ``default``::

    parser.add_argument("--seed", type=int, default=ampkit.study_seed(0))
    """
    text = os.environ.get(SEED_ENV, "").strip()
    if not text:
        return default
    try:
        return int(text)
    except ValueError:
        from .errors import UsageError

        raise UsageError(f"{SEED_ENV}={text!r} is not an integer; valid: a whole number such as 0") from None


def _as_float(value: Any) -> Any:
    return float(value) if isinstance(value, str) and value in ("NaN", "Infinity", "-Infinity") else value


def read_log(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The events of a log file, in order, values as floats (``"NaN"`` -> ``nan``).

    A last line without its newline (a writer stopped by a full disk) and lines that are not
    JSON objects are skipped; a missing file is no events.
    """
    try:
        text = Path(path).read_bytes().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return []
    events = []
    for line in text.split("\n")[:-1]:  # the piece after the last newline is incomplete or empty
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if not isinstance(event, dict):
            continue
        if isinstance(event.get("values"), dict):
            event["values"] = {name: _as_float(v) for name, v in event["values"].items()}
        events.append(event)
    return events
