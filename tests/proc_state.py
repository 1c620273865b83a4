"""Process state for tests that stop processes: is a pid gone (exited, or a zombie that runs no more)?"""

from __future__ import annotations

from pathlib import Path


def gone(pid: int) -> bool:
    """True when ``pid`` no longer runs: absent from /proc, or a zombie waiting to be reaped."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state in ("Z", "X")
