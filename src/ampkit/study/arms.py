"""Which precisions a study runs on this device, and why the others are skipped.

``auto`` runs every mode the device does in hardware. A mode is skipped when
:func:`~ampkit.precision.fit.check_fit` says it cannot run here (an error) or that it would
not run the way its name promises (a warning: fp16 emulated on a CPU, TF32 off NVIDIA GPUs).
``fp64`` runs in hardware but is a numerical reference, not a training choice: ``auto``
lists it as skipped, and it runs when asked for by name. Modes asked for by name run even
with a fit warning (the warning is kept beside the arm); only fit errors skip them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from ..hardware.capabilities import DeviceCaps
from ..precision import CANONICAL, MODES, PrecisionError
from ..precision.fit import check_fit

#: Modes ``auto`` leaves out even where they run, with the reason shown in the table.
AUTO_EXCLUDED = {
    "fp64": "numerical reference, slow, not a training choice; ask for it: --precisions fp32,fp64"
}


@dataclass(frozen=True)
class ArmPlan:
    """One row of the study: a mode that runs, or one that is skipped with its reason."""

    mode: str
    """Canonical mode name."""
    run: bool
    """Whether arms of this mode are launched."""
    reason: str | None = None
    """Why the mode is skipped (None when it runs)."""
    warnings: tuple[str, ...] = field(default=())
    """Fit warnings of a mode that runs anyway (asked for by name)."""


def _short(message: str, mode: str, caps: DeviceCaps) -> str:
    """check_fit's message without its ``"<mode> on <device> (<name>): "`` prefix (the table names both)."""
    for prefix in (f"{mode} on {caps.device_type} ({caps.name}): ", f"{mode}: "):
        if message.startswith(prefix):
            return message[len(prefix) :]
    return message


def plan_arms(precisions: Sequence[str] | None, caps: DeviceCaps) -> list[ArmPlan]:
    """Rows for ``precisions`` (canonical names) or, when None, for ``auto`` over every known mode.

    fp32 comes first when present: it is the baseline every delta is taken against.
    """
    auto = precisions is None
    modes = list(CANONICAL if precisions is None else precisions)
    if "fp32" in modes:
        modes.remove("fp32")
        modes.insert(0, "fp32")
    plans = []
    for mode in modes:
        try:
            notes = tuple(_short(w, mode, caps) for w in check_fit(MODES[mode], caps))
        except PrecisionError as err:
            plans.append(ArmPlan(mode, False, _short(str(err), mode, caps)))
            continue
        if auto and mode in AUTO_EXCLUDED:
            plans.append(ArmPlan(mode, False, AUTO_EXCLUDED[mode]))
        elif auto and notes:
            plans.append(ArmPlan(mode, False, notes[0]))
        else:
            plans.append(ArmPlan(mode, True, None, notes))
    return plans
