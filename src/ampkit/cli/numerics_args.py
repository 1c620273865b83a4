"""The numerics flags of ``ampkit train`` and what its final summary shows about numerics."""

from __future__ import annotations

import argparse
import math
from typing import Any

from ..errors import UsageError
from ..numerics.fallback import POLICIES
from ..numerics.localize import NonFiniteEvent
from .parser import add_flag


def add_nonfinite_args(parser: argparse.ArgumentParser) -> None:
    """``--on-nonfinite``, ``--fallback-after``, ``--fallback-scale-floor``, ``--detect-anomaly``."""
    group = parser.add_argument_group("numerics")
    add_flag(
        group,
        "on-nonfinite",
        default="skip",
        choices=POLICIES,
        help="inf/NaN loss or gradients: skip the step; fallback fp16-mixed -> bf16-mixed -> fp32; or stop (exit 1)",
    )
    add_flag(
        group,
        "fallback-after",
        type=int,
        default=5,
        help="fallback after this many consecutive skipped steps",
    )
    add_flag(
        group,
        "fallback-scale-floor",
        type=float,
        default=1.0,
        help="fallback when the loss scale drops under this",
    )
    add_flag(
        group,
        "detect-anomaly",
        action="store_true",
        help="hook every module to name the first one whose output or gradient went non-finite",
    )


def check_nonfinite_args(args: argparse.Namespace) -> None:
    """Refuse nonsense in the flags above before a run starts (one :class:`UsageError` line)."""
    after, floor = args.fallback_after, args.fallback_scale_floor
    if after < 1:
        raise UsageError(f"--fallback-after {after}: must be >= 1 (consecutive skipped steps)")
    if not math.isfinite(floor) or floor < 0:
        raise UsageError(
            f"--fallback-scale-floor {floor:g}: must be a finite number >= 0 (0: never by scale)"
        )


def nonfinite_fields(args: argparse.Namespace) -> dict[str, Any]:
    """TrainConfig keyword arguments from the flags above."""
    return {
        "on_nonfinite": args.on_nonfinite,
        "fallback_after": args.fallback_after,
        "fallback_scale_floor": args.fallback_scale_floor,
        "detect_anomaly": args.detect_anomaly,
    }


def numerics_summary(result: Any) -> dict[str, Any]:
    """Summary entries for a :class:`~ampkit.engine.RunResult`: what ran at the end, fallbacks,
    first non-finite step, FLOP share and loss scale.

    After a fallback the FLOP share is the final mode's (the first mode's is kept beside it), and
    the loss scale is the one after the last update (halved by a skipped last step), never the
    scale the last step was computed with.
    """
    numerics = result.numerics
    out: dict[str, Any] = {}
    share = numerics.get("flop_share")
    if share:
        out["low_precision_flop_share"] = round(share["share"], 4)
        initial = numerics.get("flop_share_initial")
        if initial:
            out["low_precision_flop_share_mode"] = share["mode"]
            out["low_precision_flop_share_initial"] = {initial["mode"]: round(initial["share"], 4)}
    if numerics.get("loss_scale_first") is not None:
        out["loss_scale_initial"] = numerics["loss_scale_first"]
        out["loss_scale_final"] = numerics.get("loss_scale_final", numerics.get("loss_scale_last"))
    if result.nonfinite:
        out["nonfinite_steps"] = len(result.nonfinite)
        out["first_nonfinite"] = NonFiniteEvent(**result.nonfinite[0]).describe()
    if result.fallbacks:
        out["fallbacks"] = result.fallbacks
        out["precision_final"] = result.fallbacks[-1]["to"]
    return out
