"""Checks of command-line values, run before any training, conversion or study arm starts.

Each check raises :class:`~ampkit.errors.UsageError` with one line naming the flag, the value and
what is valid; none of them creates or changes a file.
"""

from __future__ import annotations

import errno
import math
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import UsageError

#: Device types ampkit can train on, and the spellings ``--device`` accepts.
DEVICE_FORMS = "cpu, cuda, cuda:N, mps, xpu, xpu:N"


def _nearest_existing(path: Path) -> Path:
    """``path`` or its closest ancestor that exists (``.`` for a relative path with none)."""
    probe = path
    while not probe.exists():
        parent = probe.parent
        if parent == probe:
            break
        probe = parent
    return probe if probe.exists() else Path(".")


def _file_ancestor(path: Path) -> Path | None:
    """The first ancestor of ``path`` that is a file (so nothing can be created under it), if any."""
    for parent in path.parents:
        if parent.exists():
            return None if parent.is_dir() else parent
    return None


def _writable_dir(folder: Path) -> str | None:
    """``None`` when a file can be created in ``folder``, else the reason it cannot."""
    if not os.access(folder, os.W_OK | os.X_OK):
        return "permission denied"
    try:  # os.access says yes to root and knows nothing of read-only mounts: try for real
        fd, probe = tempfile.mkstemp(prefix=".ampkit-probe-", dir=folder)
    except OSError as err:
        return err.strerror or type(err).__name__
    os.close(fd)
    os.unlink(probe)
    return None


def _symlink_problem(path: Path) -> tuple[Path, str] | None:
    """``(link, what)`` for the first component of ``path`` that is a dangling symlink or a loop."""
    for probe in (path, *path.parents):
        if not probe.is_symlink():
            continue
        try:
            os.stat(probe)
        except OSError as err:
            if err.errno == errno.ELOOP:
                return probe, "a symlink loop"
            if err.errno == errno.ENOENT:
                return probe, f"a symlink to a missing target ({os.readlink(probe)})"
    return None


def _plain(path: Path | str, flag: str, valid: str) -> Path:
    """``path`` as a Path, refused when empty, holding a NUL byte, or passing through a broken symlink."""
    text = os.fspath(path)
    if text == "":
        raise UsageError(f"{flag} '': an empty path; valid: {valid}")
    if "\x00" in text:
        raise UsageError(f"{flag} {text!r}: holds a NUL byte; valid: {valid} without NUL bytes")
    found = _symlink_problem(Path(text))
    if found is not None:
        link, what = found
        where = "" if link == Path(text) else f" ({link} on the way)"
        raise UsageError(f"{flag} {text}: is {what}{where}; valid: {valid}")
    return Path(text)


def _looking(path: Path, flag: str, check: Callable[[Path, str], None], valid: str) -> None:
    """Run ``check``; an OSError met while looking at the path (EACCES on a parent) is a UsageError."""
    try:
        check(_plain(path, flag, valid), flag)
    except OSError as err:
        raise UsageError(f"{flag} {path}: {err.strerror or err}; valid: a path ampkit may write") from None


_DIR_VALID = "a writable folder (created if missing)"
_FILE_VALID = "a file path in a writable folder"


def check_out_dir(path: Path, flag: str = "--out") -> None:
    """``path`` is a folder ampkit may write into: an existing writable folder, or creatable.

    Creates nothing (a probe file, if made, is removed at once).
    """
    _looking(path, flag, _check_out_dir, _DIR_VALID)


def check_out_file(path: Path, flag: str = "--out") -> None:
    """``path`` names a file ampkit may write: not a folder, and its folder writable or creatable."""
    _looking(path, flag, _check_out_file, _FILE_VALID)


def _check_out_dir(path: Path, flag: str) -> None:
    valid = _DIR_VALID
    if path.exists() and not path.is_dir():
        raise UsageError(f"{flag} {path}: is a file, not a folder; valid: {valid}")
    blocker = _file_ancestor(path)
    if blocker is not None:
        raise UsageError(f"{flag} {path}: {blocker} is a file, not a folder; valid: {valid}")
    target = path if path.is_dir() else _nearest_existing(path)
    reason = _writable_dir(target)
    if reason is not None:
        raise UsageError(f"{flag} {path}: cannot create files in {target} ({reason}); valid: {valid}")


def _check_out_file(path: Path, flag: str) -> None:
    valid = _FILE_VALID
    if path.is_dir():
        raise UsageError(f"{flag} {path}: is a folder; valid: {valid}, e.g. {path / 'report.json'}")
    if path.exists() and not path.is_file():
        raise UsageError(f"{flag} {path}: not a regular file; valid: {valid}")
    blocker = _file_ancestor(path)
    if blocker is not None:
        raise UsageError(f"{flag} {path}: {blocker} is a file, not a folder; valid: {valid}")
    if path.exists() and not os.access(path, os.W_OK):
        raise UsageError(f"{flag} {path}: cannot write: permission denied; valid: {valid}")
    folder = _nearest_existing(path.parent)
    reason = _writable_dir(folder)
    if reason is not None:
        raise UsageError(f"{flag} {path}: cannot create files in {folder} ({reason}); valid: {valid}")


def _available(kind: str) -> tuple[bool, str]:
    """Whether torch can use device type ``kind`` here, and the check that said so."""
    import torch

    if kind == "cuda":
        return torch.cuda.is_available(), "torch.cuda.is_available() is False"
    if kind == "mps":
        mps = getattr(torch.backends, "mps", None)
        return bool(mps is not None and mps.is_available()), "torch.backends.mps.is_available() is False"
    if kind == "xpu":
        xpu = getattr(torch, "xpu", None)
        return bool(xpu is not None and xpu.is_available()), "torch.xpu.is_available() is False"
    return True, ""


def _count(kind: str) -> int:
    import torch

    module = {"cuda": torch.cuda, "xpu": getattr(torch, "xpu", None)}.get(kind)
    return int(module.device_count()) if module is not None else 1


def valid_devices() -> str:
    """The devices usable on this machine, as a ``valid:`` list."""
    here = ["cpu"]
    for kind in ("cuda", "mps", "xpu"):
        if _available(kind)[0]:
            count = _count(kind) if kind != "mps" else 1
            here.append(kind if count <= 1 else f"{kind}, {kind}:0..{kind}:{count - 1}")
    return ", ".join(here)


def check_device(device: str | None, flag: str = "--device") -> str:
    """The device to use: ``device`` if torch can use it here, else the default (cuda if present, else cpu)."""
    import torch

    if device is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError, TypeError):
        dev = None
    if dev is None or dev.type not in ("cpu", "cuda", "mps", "xpu"):
        shown = device if device and device.strip() == device else repr(device)
        raise UsageError(f"{flag} {shown}: unknown device; valid: {DEVICE_FORMS} (here: {valid_devices()})")
    ok, why = _available(dev.type)
    if not ok:
        raise UsageError(
            f"{flag} {device}: no {dev.type.upper()} device here ({why}); valid: {valid_devices()}"
        )
    if dev.index is not None and dev.type in ("cuda", "xpu") and dev.index >= _count(dev.type):
        raise UsageError(
            f"{flag} {device}: only {_count(dev.type)} {dev.type} device(s) here; valid: {valid_devices()}"
        )
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
