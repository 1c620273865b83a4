"""From recorded ranges to advice: which layers over/underflow in fp16, which loss scale covers them.

A loss scale S = 2^k multiplies every gradient in backward. It *covers* the run when the
smallest significant gradient (1% quantile of non-zero magnitudes, per layer, smallest over
layers) times S reaches fp16's normal floor 2^-14 (or, second best, the subnormal floor 2^-24)
while the largest gradient times S stays <= 65504. When no power of two does both, or when
activations themselves leave fp16's range (a loss scale cannot help the forward pass), the
advice is bf16 (or keeping the named layers in fp32).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from .ranges import FP16_MAX, FP16_NORMAL, FP16_TINY

#: A layer is flagged when more than this share of its non-zero values leaves fp16's range.
SHARE_LIMIT = 0.01


@dataclass
class LayerVerdict:
    """One layer's fp16 problems."""

    name: str
    type: str
    issues: list[str]
    """Subset of ``act-overflow``, ``act-underflow``, ``grad-overflow``, ``grad-underflow``."""
    act: dict[str, Any] | None
    grad: dict[str, Any] | None


@dataclass
class RangeAdvice:
    """The verdict of a range analysis."""

    layers: list[LayerVerdict]
    recommendation: str
    """``fp16-mixed`` (with :attr:`loss_scale`) or ``bf16-mixed``."""
    reason: str
    """One sentence: why."""
    loss_scale: float | None = None
    """Recommended static/initial loss scale (a power of two), when fp16 can be covered."""
    scale_range: tuple[float, float] | None = None
    """Every power of two from the first to the second covers the gradients."""
    floor: str | None = None
    """``normal`` or ``subnormal``: the fp16 floor the smallest significant gradients reach."""
    keep_fp32: list[str] = field(default_factory=list)
    """Layers whose *activations* leave fp16's range (alternative to bf16: ``--keep-fp32``)."""

    @property
    def flagged(self) -> list[LayerVerdict]:
        """Layers with at least one issue."""
        return [layer for layer in self.layers if layer.issues]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        data = asdict(self)
        data["flagged"] = [layer.name for layer in self.flagged]
        return data


def _issues(act: dict[str, Any] | None, grad: dict[str, Any] | None) -> list[str]:
    issues = []
    for kind, stats in (("act", act), ("grad", grad)):
        if stats is None:
            continue
        if stats["share_above_fp16_max"] > 0:
            issues.append(f"{kind}-overflow")
        if stats["share_below_fp16_tiny"] > SHARE_LIMIT:
            issues.append(f"{kind}-underflow")
    return issues


def covering_scales(small: float, large: float, floor: float) -> tuple[int, int] | None:
    """Exponents (lo, hi) with small*2^k >= floor and large*2^k <= 65504 for lo <= k <= hi."""
    lo = math.ceil(math.log2(floor / small))
    hi = math.floor(math.log2(FP16_MAX / large)) if large > 0 else lo + 64
    return (lo, hi) if lo <= hi else None


def advise(rows: list[dict[str, Any]]) -> RangeAdvice:
    """Verdicts for the rows of :meth:`RangeRecorder.summary` and one recommendation."""
    layers = [
        LayerVerdict(r["name"], r["type"], _issues(r["act"], r["grad"]), r["act"], r["grad"]) for r in rows
    ]
    act_bad = [v.name for v in layers if any(i.startswith("act-") for i in v.issues)]
    grads = [v.grad for v in layers if v.grad is not None and v.grad["nonzero"]]
    if act_bad:
        return RangeAdvice(
            layers,
            "bf16-mixed",
            f"activations of {', '.join(act_bad)} leave fp16's range, which no loss scale can fix; "
            "use bf16-mixed or keep these layers in fp32",
            keep_fp32=act_bad,
        )
    if not grads:
        return RangeAdvice(layers, "fp16-mixed", "no gradients recorded", loss_scale=1.0)
    small = min(g["p01_nonzero"] or g["min_nonzero"] for g in grads)
    large = max(g["max"] for g in grads)
    for floor, label in ((FP16_NORMAL, "normal"), (FP16_TINY, "subnormal")):
        span = covering_scales(small, large, floor)
        if span is None:
            continue
        lo, hi = span
        k = min(max((lo + hi) // 2, lo), hi)  # the middle: headroom both ways
        return RangeAdvice(
            layers,
            "fp16-mixed",
            f"gradients span {small:.3g}..{large:.3g}; a loss scale of 2^{k} lifts the smallest "
            f"significant ones above fp16's {label} floor and keeps the largest under 65504",
            loss_scale=2.0**k,
            scale_range=(2.0**lo, 2.0**hi),
            floor=label,
        )
    return RangeAdvice(
        layers,
        "bf16-mixed",
        f"gradients span {small:.3g}..{large:.3g}, wider than fp16 can hold under any loss scale; use bf16-mixed",
    )
