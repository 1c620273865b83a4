"""``--memory-budget``: sizes as people write them, and the budget a plan measures against.

Units: one letter and ``Ki``/``Mi``/``Gi``/``Ti`` are binary (Docker's ``2g`` is 2 GiB),
``KB``/``MB``/``GB``/``TB`` decimal (as disk makers'), a plain number is bytes. Without a
budget, a CPU plan uses the memory available now (``MemAvailable``) and a GPU plan the device's.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

from ..errors import UsageError

#: ``--memory-budget`` units. One letter (and ``Ki``/``Mi``/``Gi``/``Ti``) is binary, as Docker's
#: ``2g``; ``KB``/``MB``/``GB``/``TB`` are decimal, as disk makers'.
UNITS: dict[str, int] = {
    "": 1,
    "b": 1,
    **{f"{p}{s}": 1024**i for i, p in enumerate("kmgt", 1) for s in ("", "i", "ib")},
    **{f"{p}b": 1000**i for i, p in enumerate("kmgt", 1)},
}
#: Budgets below this cannot hold any training process (Python with torch alone is ~150 MiB).
MIN_BUDGET = 64 * 1024**2
_SIZE = re.compile(r"\s*((?:\d+\.?\d*|\.\d+)(?:e[+-]?\d+)?)\s*([a-z]*)\s*", re.IGNORECASE)
VALID_SIZE = "a size such as 2GiB, 512MiB, 1.5GB or 2g (a plain number is bytes)"


def parse_size(text: str, flag: str = "--memory-budget") -> int:
    """``"2GiB"`` -> 2147483648; :class:`UsageError` naming ``flag`` for anything else."""
    match = _SIZE.fullmatch(str(text))
    unit = match.group(2).lower() if match else None
    if match is None or unit not in UNITS:
        raise UsageError(f"{flag} {text!r}: not a size; valid: {VALID_SIZE}")
    value = float(match.group(1)) * UNITS[unit]
    if not math.isfinite(value):
        raise UsageError(f"{flag} {text!r}: not a size; valid: {VALID_SIZE}")
    if value < MIN_BUDGET:
        raise UsageError(
            f"{flag} {text}: below {format_size(MIN_BUDGET)}, which no training process fits in "
            f"(Python with torch alone takes ~150 MiB); valid: {VALID_SIZE}"
        )
    return int(value)


def format_size(n: float | None) -> str:
    """Bytes as ``812.4 MiB`` / ``1.50 GiB``; ``-`` for None."""
    if n is None:
        return "-"
    if n >= 1024**3:
        return f"{n / 1024**3:.2f} GiB"
    if n >= 1024**2:
        return f"{n / 1024**2:.1f} MiB"
    return f"{n / 1024:.0f} KiB"


def mem_available() -> int | None:
    """``MemAvailable`` from /proc/meminfo, in bytes (None where there is none)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def resolve_budget(text: str | None, device: str) -> tuple[int | None, str]:
    """The budget in bytes and where it came from."""
    given = parse_size(text) if text is not None else None
    if device.startswith("cuda"):
        import torch

        from .capabilities import device_capabilities

        total = device_capabilities(torch.device(device)).total_memory_bytes
        if given is not None and total and given > total:
            raise UsageError(
                f"--memory-budget {text}: more than {device}'s {format_size(total)}; "
                f"valid: up to {format_size(total)}"
            )
        if given is not None:
            return given, f"--memory-budget {text} (the allocator's cap)"
        return None, f"{device}'s memory ({format_size(total)})"
    if given is not None:
        return given, f"--memory-budget {text}"
    available = mem_available()
    if available is None:
        raise UsageError(
            f"--memory-budget: needed here (no /proc/meminfo to read the available memory); valid: {VALID_SIZE}"
        )
    return available, f"memory available now ({format_size(available)}, MemAvailable)"
