"""Errors a user can fix from the command line; the CLI prints them as one line, exit code 2."""

from __future__ import annotations

import re


class UsageError(ValueError):
    """Bad input (a path, a value, a combination); the message names what was wrong and what is valid."""


_OOM_WORDS = ("out of memory", "can't allocate memory", "cannot allocate memory")
_ALLOC = re.compile(r"tried to allocate ([0-9]+ bytes|[0-9.]+ ?[KMGT]i?B)", re.IGNORECASE)


def out_of_memory(err: BaseException) -> str | None:
    """``out of memory (tried to allocate N)`` when ``err`` is an allocation failure (``MemoryError``,
    torch's CPU allocator or ``torch.OutOfMemoryError``), else None."""
    text = str(err)
    if not isinstance(err, MemoryError) and not any(w in text.lower() for w in _OOM_WORDS):
        return None
    got = _ALLOC.search(text)
    if got and got.group(1).endswith(" bytes"):
        return f"out of memory (tried to allocate {int(got.group(1).split()[0]) / 1e9:.1f} GB)"
    return "out of memory" + (f" (tried to allocate {got.group(1)})" if got else "")
