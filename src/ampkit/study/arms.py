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
from dataclasses import asdict, dataclass, field
from typing import Any

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


def with_compile(plans: list[ArmPlan], compile: str) -> list[ArmPlan]:
    """The plan under ``compile``: ``off`` as is; ``on`` every arm as ``MODE+compile``; ``both`` each
    mode eager, then compiled (``--compile both``: the two side by side in one study)."""
    from dataclasses import replace

    if compile == "off":
        return plans
    compiled = [replace(p, mode=f"{p.mode}+compile") for p in plans]
    if compile == "on":
        return compiled
    return [arm for pair in zip(plans, compiled, strict=True) for arm in pair]


def new_warnings(plan: ArmPlan, record: dict[str, Any]) -> list[str]:
    """The arm's own warnings that do not repeat a fit warning already printed for it."""
    return [w for w in record.get("warnings", []) if not any(p in w or w in p for p in plan.warnings)]


def arm_entry(plan: ArmPlan, runs: list[dict[str, Any]], expected: int) -> dict[str, Any]:
    """The study's entry of one mode: skipped, failed, interrupted, flagged or measured, with its runs."""
    entry: dict[str, Any] = asdict(plan)
    extra = [w for r in runs for w in new_warnings(plan, r)]
    curves = [r["loss_curve"] for r in runs if r.get("status") == "measured" and "argv" in r]
    if len(curves) > 1 and curves[0] and all(c == curves[0] for c in curves):  # a command ignoring its seed
        extra.append(
            f"seeds {', '.join(str(r.get('seed')) for r in runs)} gave identical loss curves: does the script "
            "read {seed} or AMPKIT_SEED? (otherwise the ± over seeds measures nothing)"
        )
    entry["warnings"] = list(dict.fromkeys([*plan.warnings, *extra]))
    if not plan.run:
        entry["status"], entry["runs"] = "skipped", []
        return entry
    failed = [r for r in runs if r.get("status") == "failed"]
    measured = [r for r in runs if r.get("status") == "measured"]
    if failed:
        first = failed[0]
        seed = f"seed {first.get('seed')}: " if expected > 1 else ""
        entry["status"], entry["reason"] = "failed", seed + str(first.get("reason", "failed"))
        entry["stderr_tail"], entry["log"] = first.get("stderr_tail", []), first.get("log")
    elif len(measured) < expected:
        entry["status"] = "interrupted"
        entry["reason"] = (
            f"{len(measured)} of {expected} seed runs finished before the study was interrupted"
            if runs
            else "not started: the study was interrupted"
        )
    else:
        entry["status"] = "measured"
    checks = [r["precision_check"] for r in runs if r.get("precision_check")]
    if checks:  # a command arm: what its script said it ran
        entry["ran_precision"] = "+".join(sorted({c["ran"] for c in checks if c["ran"]})) or "not reported"
        flagged = [r for r in measured if r["precision_check"]["flagged"]]
        if flagged and entry["status"] == "measured":
            seed = f"seed {flagged[0].get('seed')}: " if expected > 1 else ""
            entry["status"], entry["reason"] = "flagged", seed + flagged[0]["precision_check"]["evidence"]
    entry["runs"] = runs
    return entry
