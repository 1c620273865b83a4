"""Checks of command-line values, run before any training, conversion or study arm starts.

Each check raises :class:`~ampkit.errors.UsageError` with one line naming the flag, the value and
what is valid; none of them creates or changes a file.
"""

from __future__ import annotations

import math
from typing import Any

from ..errors import UsageError
from .paths import check_out_dir as check_out_dir  # re-exported: commands import every check from here
from .paths import check_out_file as check_out_file


def valid_devices() -> str:
    """The devices usable on this machine, as a ``valid:`` list."""
    from ..precision.device import devices_here

    return devices_here()


def check_device(device: str | None, flag: str = "--device") -> str:
    """The device to use: ``device`` if torch can use it here, else the default (cuda if present, else cpu)."""
    import torch

    from ..precision.aliases import PrecisionError
    from ..precision.device import DEVICE_FORMS, usable_device

    if device is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError, TypeError):
        dev = None
    if dev is None or dev.type not in ("cpu", "cuda", "mps", "xpu"):
        shown = device if device and device.strip() == device else repr(device)
        raise UsageError(f"{flag} {shown}: unknown device; valid: {DEVICE_FORMS} (here: {valid_devices()})")
    try:  # what this machine has: the same check (and words) as Precision's own
        usable_device(dev, source=flag)
    except PrecisionError as err:
        raise UsageError(str(err)) from None
    return device


def check_task(name: str, size: str = "default", *, build: bool = False) -> None:
    """The task is a built-in name or an importable ``module:factory`` whose factory is callable.

    Imports the module (a user's task module runs its top level, as training would) and trains
    nothing. With ``build``, a user's factory is also called once on the CPU at ``size`` (batch
    size 2) and must return a Task, so a factory that raises is one line here too (the built-in
    factories are not built: they are ampkit's, and the default sizes take a second).
    """
    from ..tasks.registry import BUILTIN, build_task, resolve_factory

    if size not in ("default", "small", "gpu"):
        raise UsageError(f"--size {size}: unknown size; valid: default, small, gpu")
    if size == "gpu" and name == "ct":
        raise UsageError(
            "--size gpu: the ct task has no gpu size; valid: default, small (gpu: digits, tinygpt)"
        )
    if name == "ct":
        from .env import check_cache

        check_cache()
    if not build or name in BUILTIN:  # ampkit's own factories are not a user's mistake to catch
        resolve_factory(name)
        return
    import torch

    from ..tasks import TaskSpec

    build_task(name, TaskSpec(seed=0, batch_size=2, device=torch.device("cpu"), size=size))


def _show(value: Any) -> str:
    """A value as the user typed it: ``-1`` and ``nan``, not ``-1.0``."""
    return f"{value:g}" if isinstance(value, float) else str(value)


def _number(value: Any, flag: str) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise UsageError(f"{flag} {value!r}: not a number") from None


def check_finite(value: Any, flag: str) -> float:
    """``value`` as a finite float (NaN and inf refused)."""
    number = _number(value, flag)
    if not math.isfinite(number):
        raise UsageError(f"{flag} {_show(value)}: must be a finite number")
    return number


def check_positive(
    value: Any, flag: str, *, allow_zero: bool = False, integer: bool = False, note: str = ""
) -> None:
    """``value`` is ``None`` (not given) or a finite number > 0 (>= 0 with ``allow_zero``).

    ``integer`` names the rule as a whole number; ``note`` adds what 0 means, e.g. ``"0: at the end"``.
    """
    if value is None:
        return
    if isinstance(value, bool):  # True is an int to Python, not a count to a user
        raise UsageError(f"{flag} {value}: not a number")
    number = _number(value, flag)
    bound = ">= 0" if allow_zero else ("> 0" if not integer else ">= 1")
    whole = integer and isinstance(value, int)
    kind = "" if whole else ("a whole number " if integer else "a finite number ")
    rule = f"must be {kind}{bound}" + (f" ({note})" if note else "")
    if not math.isfinite(number) or number < 0 or (number == 0 and not allow_zero):
        raise UsageError(f"{flag} {_show(value)}: {rule}")
    if integer and not whole and number != int(number):
        raise UsageError(f"{flag} {_show(value)}: {rule}")


def check_int_range(value: Any, flag: str, low: int, high: int) -> None:
    """``value`` is ``None`` or a whole number in ``low..high``."""
    if value is None:
        return
    if not isinstance(value, int) or not low <= value <= high:
        raise UsageError(f"{flag} {value}: must be a whole number in {low}..{high}")


def check_keep_fp32(spec: str | None, flag: str = "--keep-fp32") -> None:
    """``spec`` is ``None`` or a valid, non-empty keep-fp32 selection (type names, ``re:PATTERN``)."""
    if spec is None:
        return
    from ..precision import ModuleFilter, PrecisionError

    valid = "type names or re:PATTERN, comma-separated, e.g. LayerNorm,re:^head"
    try:
        chosen = ModuleFilter.parse(spec)
    except PrecisionError as err:
        raise UsageError(f"{flag} {spec}: {err}; valid: {valid}") from None
    if not chosen:
        raise UsageError(f"{flag} {spec!r}: an empty selection; valid: {valid} (or no {flag})")


#: The most passes over a training set a run may ask for.
MAX_EPOCHS = 10**6


def check_steps(value: Any, flag: str = "--steps") -> None:
    """``value`` is ``None`` or a whole number in ``1..MAX_STEPS``."""
    from ..study.validate import MAX_STEPS

    check_positive(value, flag, integer=True)
    if value is not None and value > MAX_STEPS:
        raise UsageError(f"{flag} {value}: too many steps; valid: a whole number in 1..{MAX_STEPS:_}")


def check_threads(value: Any, flag: str = "--threads") -> None:
    """``value`` is ``None`` or a whole number of CPU threads in ``1..os.cpu_count()``.

    More threads than CPUs only oversubscribe, and far more (100000) make OpenBLAS fail to start
    its threads and crash the process, so the machine's count is the bound.
    """
    from ..study.validate import max_threads

    check_positive(value, flag, integer=True, note="torch CPU threads")
    count = max_threads()
    if value is not None and value > count:
        raise UsageError(
            f"{flag} {value}: more than the {count} CPU(s) of this machine; valid: a whole number in 1..{count}"
        )
