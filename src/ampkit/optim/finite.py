"""Are all gradients finite? The check behind ``skip_nonfinite``, cheap enough to run every step.

On a 2-core CPU, tinygpt's 3.2M gradients: the foreach 2-norm takes 0.29 ms, the max-abs norm
4.3 ms (not vectorised), ``isfinite().all()`` per tensor 4.4 ms. So the 2-norm decides and the
max-abs norm only confirms the rare step whose 2-norm is not finite. Both go through
``nn.utils.get_total_norm`` (grouped by device and dtype; DTensor gradients under FSDP2 too).
"""

from __future__ import annotations

import math

import torch
from torch import nn


def exactly_finite(grads: list[torch.Tensor]) -> bool:
    """Every entry finite, by the max-abs norm (cannot overflow; NaN propagates). ~15x slower than the
    2-norm on a CPU: for confirming a non-finite 2-norm only."""
    return math.isfinite(float(nn.utils.get_total_norm(grads, norm_type=math.inf)))


def grads_finite(grads: list[torch.Tensor], norm: float | None = None) -> bool:
    """Every gradient entry finite: one fused 2-norm (foreach kernels per device and dtype), one host sync;
    none when their 2-norm ``norm`` is known already (clipping, tracking).

    A non-finite 2-norm is confirmed on the entries themselves (the 2-norm of large finite fp16
    gradients can overflow), which costs a second pass only on steps that look bad.
    """
    if norm is None:
        norm = float(nn.utils.get_total_norm(grads))
    return math.isfinite(norm) or exactly_finite(grads)
