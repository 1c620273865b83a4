"""Reading a settings file the user names (``--config study.toml``, ``--merge-into ds.json``).

A user can name anything: a folder, a FIFO that blocks until something writes to it, ``/dev/zero``
that never ends, a 10 GB log, a file nested 5000 levels deep. Each is refused in one line
(:class:`~ampkit.errors.UsageError` naming the flag, the path and what is valid) before the
parser recurses or the read runs unbounded: only a regular file of at most :data:`MAX_BYTES`
is read, and a parsed value may nest at most :data:`MAX_DEPTH` levels.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ..errors import UsageError
from ..fsutil import open_regular

#: Largest settings file read (a study file or a DeepSpeed config is a few KiB).
MAX_BYTES = 16 << 20
#: Deepest nesting of tables/lists/objects accepted in a parsed settings file.
MAX_DEPTH = 64


def read_text(path: Path | str, flag: str, valid: str) -> str:
    """The UTF-8 text of the regular file ``path``; UsageError for anything else.

    The file is opened non-blocking and checked with ``fstat`` on that very descriptor, so a FIFO
    neither blocks the open nor is read, and a device (``/dev/zero``) is never read at all.
    """
    where = f"{flag} {path}"
    try:
        fd, info = open_regular(path)
    except FileNotFoundError:
        raise UsageError(f"{where}: no such file; {valid}") from None
    except IsADirectoryError:
        raise UsageError(f"{where}: is a folder; {valid}") from None
    except (OSError, ValueError) as err:  # EACCES, ELOOP, ENOTDIR, a device or FIFO; ValueError: a NUL byte
        reason = err.strerror if isinstance(err, OSError) and err.strerror else str(err)
        raise UsageError(f"{where}: {reason}; {valid}") from None
    try:
        if info.st_size > MAX_BYTES:
            raise UsageError(f"{where}: {info.st_size:,} bytes, more than {MAX_BYTES >> 20} MiB; {valid}")
        os.set_blocking(fd, True)
        with os.fdopen(fd, "rb", closefd=True) as handle:
            fd = -1
            data = handle.read(MAX_BYTES + 1)
    except OSError as err:
        raise UsageError(f"{where}: {err.strerror or err}; {valid}") from None
    finally:
        if fd >= 0:
            os.close(fd)
    if len(data) > MAX_BYTES:  # grew while being read
        raise UsageError(f"{where}: more than {MAX_BYTES >> 20} MiB; {valid}")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise UsageError(f"{where}: not UTF-8 text; {valid}") from None


def depth(value: Any) -> int:
    """How deeply ``value`` nests lists and mappings (a scalar: 0), without recursion."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, Mapping):
            children: Any = item.values()
        elif isinstance(item, list | tuple):
            children = item
        else:
            continue
        deepest = max(deepest, level + 1)
        if deepest > MAX_DEPTH:
            return deepest
        stack.extend((child, level + 1) for child in children)
    return deepest


def parse(text: str, loads: Callable[[str], Any], flag: str, path: Path | str, valid: str) -> Any:
    """``loads(text)``, with a RecursionError (the parser's own) or a nesting deeper than
    :data:`MAX_DEPTH` refused in one line; the parser's own errors are left to the caller."""
    too_deep = (
        f"{flag} {path}: nested more than {MAX_DEPTH} levels deep; {valid} (at most {MAX_DEPTH} levels)"
    )
    try:
        data = loads(text)
    except RecursionError:
        raise UsageError(too_deep) from None
    if depth(data) > MAX_DEPTH:
        raise UsageError(too_deep)
    return data
