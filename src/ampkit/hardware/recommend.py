"""Which precision to train in here: the seed guide's decision tree, corrected by measurement.

The guide's §8.1 tree is about GPU generations: Ampere+ (cc >= 8.0) -> bf16-mixed,
Volta/Turing (cc 7.x) -> fp16-mixed, anything else -> fp32. It knows nothing about CPUs with
bf16 units or GPUs whose fp16 is slow, so the measured matmul throughput gets the last word:
a mixed mode is recommended only where it is runnable here (its fit check raises nothing)
its dtype is in hardware here (a measurement can demote a mode, never promote an emulated
dtype: an emulated dtype that "measures fast" is noise from a shared machine), and its matmul
measured at least :data:`MIN_SPEEDUP` x fp32 at a size of at least :data:`MIN_RATIO_SIZE`².
bf16 wins near-ties (no loss scaler, fp32's exponent range). Every measured slowdown is
stated as a fact.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..precision.aliases import PrecisionError
from ..precision.modes import MODES
from .capabilities import DeviceCaps
from .support import Support, support_matrix
from .throughput import Throughput

#: A mixed mode must make matmuls at least this much faster than fp32 to be worth recommending.
MIN_SPEEDUP = 1.2
#: Ratios measured on smaller matmuls are dominated by overhead and do not count.
MIN_RATIO_SIZE = 256
#: bf16 is preferred over a faster fp16 unless fp16 is faster than bf16 by more than this factor.
BF16_PREFERENCE = 1.25
#: Bytes per trainable parameter for weights + gradients + AdamW state (fp32 master weights).
BYTES_PER_PARAM_MIXED = 16
#: The same in a true-half mode (bf16 weights, gradients and AdamW state).
BYTES_PER_PARAM_TRUE = 8

_MIXED = {"bf16": "bf16-mixed", "fp16": "fp16-mixed"}


@dataclass(frozen=True)
class Recommendation:
    """The recommended mode, the tree's answer, and the facts behind any correction."""

    mode: str
    """Canonical mode to use here."""
    tree_mode: str
    """What the seed guide's §8.1 decision tree says for this hardware."""
    reason: str
    """One sentence: why :attr:`mode`."""
    facts: list[str] = field(default_factory=list)
    """Measured facts (speed-ups, slowdowns, emulation) a user should know."""

    @property
    def corrected(self) -> bool:
        """True when the measurement overruled the decision tree."""
        return self.mode != self.tree_mode


def decision_tree(caps: DeviceCaps) -> tuple[str, str]:
    """The seed guide's §8.1 tree: (mode, reason)."""
    cc = caps.compute_capability
    if caps.is_cuda and cc is not None and cc >= (8, 0):
        return "bf16-mixed", f"Ampere or newer (cc {cc[0]}.{cc[1]}): bf16 mixed, TF32 for the rest"
    if caps.is_cuda and cc is not None and cc[0] == 7:
        return "fp16-mixed", f"Volta/Turing (cc {cc[0]}.{cc[1]}): fp16 mixed with loss scaling"
    return "fp32", f"not a Volta/Turing/Ampere+ GPU ({caps.name}): fp32"


def _runnable(mode: str, caps: DeviceCaps) -> bool:
    # Imported here: precision.fit imports this package's capabilities module (a cycle at import time).
    from ..precision.fit import check_fit

    try:
        check_fit(MODES[mode], caps)
    except PrecisionError:
        return False
    return True


def _facts(support: dict[str, Support], throughput: Throughput) -> list[str]:
    facts = []
    for name in ("bf16", "fp16", "tf32", "fp64"):
        measured = throughput.ratio(name)
        if measured is None:
            continue
        ratio, size = measured
        how = f"{ratio:.2f}x faster than" if ratio >= 1 else f"{1 / ratio:.1f}x slower than"
        level = support[name].level if name in support else "hardware"
        prefix = f"{name} compute here is emulated: " if level == "emulated" else f"{name}: "
        threads = f"{throughput.threads} thread{'' if throughput.threads == 1 else 's'}"
        fact = f"{prefix}matmul measured {how} fp32 ({size}², {threads})"
        if ratio < 1 and name in _MIXED:
            fact += f"; {name} modes not recommended here"
        if ratio >= 1 and level == "emulated":
            fact += " (implausible for an emulated dtype: the machine is probably busy, run doctor again)"
        elif size < MIN_RATIO_SIZE:
            fact += f" (below {MIN_RATIO_SIZE}²: too small to count, the machine is probably busy)"
        facts.append(fact)
    return facts


def recommend(caps: DeviceCaps, throughput: Throughput | None = None) -> Recommendation:
    """The decision tree's mode, corrected by ``throughput`` when given."""
    tree_mode, tree_reason = decision_tree(caps)
    if throughput is None:
        return Recommendation(tree_mode, tree_mode, f"decision tree (not measured): {tree_reason}")
    support = support_matrix(caps)
    facts = _facts(support, throughput)
    conclusive = {
        dtype: measured[0]
        for dtype in _MIXED
        if (measured := throughput.ratio(dtype)) is not None and measured[1] >= MIN_RATIO_SIZE
    }
    if not conclusive:
        return Recommendation(tree_mode, tree_mode, f"{tree_reason} (measurement inconclusive)", facts)
    speedups = {
        dtype: ratio
        for dtype, ratio in conclusive.items()
        if ratio >= MIN_SPEEDUP and support[dtype].level == "hardware" and _runnable(_MIXED[dtype], caps)
    }
    if not speedups:
        return Recommendation(
            "fp32",
            tree_mode,
            f"no 16-bit mode in hardware here measured >= {MIN_SPEEDUP}x fp32 (matmul >= {MIN_RATIO_SIZE}²)"
            + (
                "" if tree_mode == "fp32" else f"; this overrules the §8.1 tree's {tree_mode} ({tree_reason})"
            ),
            facts,
        )
    fastest = max(speedups, key=lambda d: speedups[d])
    dtype = (
        "bf16" if "bf16" in speedups and speedups[fastest] <= BF16_PREFERENCE * speedups["bf16"] else fastest
    )
    mode = _MIXED[dtype]
    size = throughput.ratio(dtype)
    assert size is not None
    measured_text = f"{dtype} matmul measured {speedups[dtype]:.2f}x fp32 ({size[1]}²)"
    if mode == tree_mode:
        reason = f"{tree_reason}; confirmed: {measured_text}"
    else:
        reason = f"{measured_text}; this overrules the seed guide's §8.1 tree, which says {tree_mode} ({tree_reason})"
    return Recommendation(mode, tree_mode, reason, facts)
