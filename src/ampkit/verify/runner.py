"""Run :data:`~ampkit.verify.checks.CHECKS` for every mode runnable on a device, one report row per mode."""

from __future__ import annotations

import time
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

import torch

from ..hardware import device_capabilities
from ..precision import CANONICAL, MODES, Precision, PrecisionError, PrecisionWarning, canonical_mode
from ..precision.fit import check_fit
from .checks import CHECKS, Check

Status = Literal["pass", "fail", "skip"]


@dataclass(frozen=True)
class ModeReport:
    """Everything ``verify`` found out about one mode."""

    mode: str
    """Canonical mode name."""
    status: Status
    """``"pass"`` (every applicable check passed), ``"fail"`` or ``"skip"`` (not runnable here)."""
    checks: tuple[Check, ...] = ()
    """The checks that ran, in :data:`CHECKS` order."""
    notes: tuple[str, ...] = field(default=())
    """Fit warnings (e.g. fp16 emulated on this CPU) or the reason for a skip."""
    seconds: float = 0.0
    """Wall time of this mode's checks."""

    def check(self, name: str) -> Check | None:
        """The check called ``name``, if it ran."""
        return next((c for c in self.checks if c.name == name), None)


def _run(check: object, precision: Precision) -> Check:
    name = getattr(check, "__name__", "check").removeprefix("check_")
    try:
        return check(precision)  # type: ignore[operator,no-any-return]
    except Exception as err:  # a crash inside one check is that check failing, not verify crashing
        return Check(
            name, False, f"error: {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
        )


def verify_mode(
    mode: str, device: torch.device | str = "cpu", *, fp8_emulate: bool = False, compile: bool = False
) -> ModeReport:
    """Run every check for ``mode`` on ``device``; a mode whose fit check raises is skipped.

    ``fp8_emulate`` runs fp8 modes with emulated fp8 numerics where fp8 hardware is missing;
    ``compile`` checks the model under torch.compile (``Precision(compile=True)``: prepare compiles).
    """
    name = canonical_mode(mode)
    caps = device_capabilities(device)
    try:
        notes = tuple(check_fit(MODES[name], caps, fp8_emulate=fp8_emulate))
    except PrecisionError as err:
        return ModeReport(name, "skip", notes=(str(err),))
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PrecisionWarning)  # shown in the table instead
        try:
            precision = Precision(name, device, caps=caps, fp8_emulate=fp8_emulate, compile=compile)
        except PrecisionError as err:
            return ModeReport(name, "skip", notes=(str(err),))
        checks = tuple(_run(check, precision) for check in CHECKS)
    status: Status = "fail" if any(c.passed is False for c in checks) else "pass"
    return ModeReport(name, status, checks, notes, time.perf_counter() - start)


def verify_modes(
    modes: Iterable[str] | None = None,
    device: torch.device | str = "cpu",
    *,
    fp8_emulate: bool = False,
    compile: bool = False,
) -> list[ModeReport]:
    """:func:`verify_mode` for each of ``modes`` (default: every canonical mode)."""
    chosen = CANONICAL if modes is None else modes
    return [verify_mode(m, device, fp8_emulate=fp8_emulate, compile=compile) for m in chosen]
