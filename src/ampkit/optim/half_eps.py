"""An optimizer ``eps`` that float16 can hold: a user's AdamW keeps PyTorch's 1e-8 in fp16-true.

Adam's state lives in the parameters' dtype. With float16 parameters ``sqrt(v) + 1e-8`` is
``sqrt(v) + 0`` (1e-8 is below float16's smallest subnormal, 6e-8), so a parameter whose
gradient is 0 gets ``0 / 0`` and the first step writes NaN into the weights. The engine builds
its AdamW with eps 1e-4 for float16 (``engine.setup.ADAM_EPS``); :func:`raise_half_eps` does the
same for an optimizer the user built: every param group that has a numeric ``eps`` below 1e-4
and holds float16 parameters is raised to 1e-4, with one warning that names the user's line, and so
is the optimizer's ``defaults["eps"]``, which a group added later (progressive unfreezing) takes.
The wrapper checks again whenever the number of param groups has changed (one ``len`` per step).
"""

from __future__ import annotations

import numbers

import torch

from ..precision import PrecisionWarning
from ..warn import warn

#: The smallest ``eps`` used with float16 parameters (README's mode table: "AdamW eps 1e-4").
HALF_EPS = 1e-4


def _too_small(eps: object) -> bool:
    # absent, a tuple (Adafactor) or large enough: left alone
    return not isinstance(eps, bool) and isinstance(eps, numbers.Real) and eps < HALF_EPS


def raise_half_eps(optimizers: list[torch.optim.Optimizer], mode: str) -> list[float]:
    """Raise ``eps`` to :data:`HALF_EPS` in float16 groups, and in the ``defaults`` of an optimizer that
    holds float16 parameters (a group added later without ``eps`` takes it from there); returns the
    group values replaced (warned once per call)."""
    replaced: list[float] = []
    for optimizer in optimizers:
        half = False
        for group in optimizer.param_groups:
            if not any(p.dtype == torch.float16 for p in group["params"]):
                continue
            half = True
            if _too_small(group.get("eps")):
                replaced.append(float(group["eps"]))
                group["eps"] = HALF_EPS
        defaults = getattr(optimizer, "defaults", None)
        if half and isinstance(defaults, dict) and _too_small(defaults.get("eps")):
            defaults["eps"] = HALF_EPS
    if replaced:
        warn(
            f"{mode}: eps {min(replaced):g} underflows in float16 (smallest normal 6.1e-05); using 1e-4; "
            "pass eps>=1e-4 to silence",
            PrecisionWarning,
        )
    return replaced
