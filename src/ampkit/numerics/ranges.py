"""fp16 range analysis: per-layer activation and gradient magnitudes recorded in an fp32 run.

:class:`RangeRecorder` hooks every module: a forward hook measures its output, a tensor hook
on that output measures the gradient flowing back into it, and a post-accumulate hook adds
the module's own parameter gradients. Per layer and kind it keeps the largest magnitude, the
smallest non-zero one, the share of non-zero values below fp16's smallest subnormal (2^-24,
they flush to zero), the share above fp16's max (65504, they overflow) and a log2 histogram
of magnitudes, all accumulated on the device (no sync per step). :mod:`.advice` turns the
stats into verdicts and a loss scale.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils._pytree import tree_leaves

#: fp16's largest finite value.
FP16_MAX = 65504.0
#: fp16's smallest positive subnormal (2^-24): anything smaller flushes to zero.
FP16_TINY = 2.0**-24
#: fp16's smallest positive normal (2^-14): below it only subnormals, with fewer bits.
FP16_NORMAL = 2.0**-14
#: frexp exponents are stored in bins offset by this (fp32 subnormals reach 2^-149).
_OFFSET = 160
_BINS = 320


class TensorStats:
    """Running magnitude statistics of every tensor fed to :meth:`add` (kept on the device)."""

    def __init__(self) -> None:
        self.hist: torch.Tensor | None = None  # bin 0: zeros; bin e+_OFFSET: |x| in [2^(e-1), 2^e)
        self.max: torch.Tensor | None = None
        self.min_nonzero: torch.Tensor | None = None
        self.over: torch.Tensor | None = None
        self.count = 0

    def add(self, tensor: torch.Tensor) -> None:
        """Accumulate one tensor (floating tensors only; inf/NaN count as overflow)."""
        mag = tensor.detach().float().abs()
        finite = torch.where(torch.isfinite(mag), mag, 0.0)
        exps = torch.frexp(finite).exponent.clamp(1 - _OFFSET, _BINS - _OFFSET - 1) + _OFFSET
        bins = torch.where(finite > 0, exps, 0).flatten()
        hist = torch.bincount(bins, minlength=_BINS)
        big = finite.max() if finite.numel() else torch.zeros((), device=mag.device)
        small = torch.where(finite > 0, finite, math.inf).min() if finite.numel() else big
        over = (~(mag <= FP16_MAX)).sum()  # NaN and inf count as overflow
        if self.hist is None:
            self.hist, self.max, self.min_nonzero, self.over = hist, big, small, over
        else:
            assert self.max is not None and self.min_nonzero is not None and self.over is not None
            self.hist = self.hist + hist
            self.max = torch.maximum(self.max, big)
            self.min_nonzero = torch.minimum(self.min_nonzero, small)
            self.over = self.over + over
        self.count += tensor.numel()

    def summary(self) -> dict[str, Any] | None:
        """Plain numbers (one device sync): max, min_nonzero, shares, the 1% quantile of non-zeros."""
        if self.hist is None or self.count == 0:
            return None
        hist = self.hist.cpu().tolist()
        nonzero = self.count - hist[0]
        below = sum(hist[1 : _OFFSET - 24 + 1])  # exponent <= -24  <=>  |x| < 2^-24
        small_q = None
        if nonzero:
            running = 0
            for index in range(1, _BINS):
                running += hist[index]
                if running >= 0.01 * nonzero:
                    small_q = 2.0 ** (index - _OFFSET - 1)  # lower edge of the bin
                    break
        min_nz = float(self.min_nonzero) if self.min_nonzero is not None else math.inf
        return {
            "max": float(self.max) if self.max is not None else 0.0,
            "min_nonzero": min_nz if math.isfinite(min_nz) else None,
            "p01_nonzero": small_q,
            "share_below_fp16_tiny": below / nonzero if nonzero else 0.0,
            "share_above_fp16_max": int(self.over) / self.count if self.over is not None else 0.0,
            "count": self.count,
            "nonzero": nonzero,
        }


@dataclass
class LayerStats:
    """Activation (module output) and gradient (output gradient and own parameter grads) stats."""

    name: str
    type: str
    act: TensorStats = field(default_factory=TensorStats)
    grad: TensorStats = field(default_factory=TensorStats)


class RangeRecorder:
    """``with RangeRecorder(model) as rec: <train steps>``; then ``rec.summary()`` per layer."""

    def __init__(self, model: nn.Module):
        self.layers: dict[str, LayerStats] = {}
        self._handles: list[Any] = []
        for name, module in model.named_modules():
            label = name or "<model>"
            stats = self.layers[label] = LayerStats(label, type(module).__name__)
            self._handles.append(module.register_forward_hook(self._forward_hook(stats)))
            for param in module.parameters(recurse=False):
                if param.requires_grad:
                    self._handles.append(param.register_post_accumulate_grad_hook(self._param_hook(stats)))

    @staticmethod
    def _forward_hook(stats: LayerStats) -> Any:
        def hook(module: nn.Module, args: Any, output: Any) -> None:
            if not torch.is_grad_enabled():
                return  # evaluation passes are not training ranges
            for leaf in tree_leaves(output):
                if isinstance(leaf, torch.Tensor) and leaf.is_floating_point():
                    stats.act.add(leaf)
                    if leaf.requires_grad:
                        leaf.register_hook(lambda grad: stats.grad.add(grad))

        return hook

    @staticmethod
    def _param_hook(stats: LayerStats) -> Any:
        def hook(param: torch.Tensor) -> None:
            if param.grad is not None:
                stats.grad.add(param.grad)

        return hook

    def summary(self) -> list[dict[str, Any]]:
        """One dict per module that saw data: name, type, ``act`` and ``grad`` summaries."""
        rows = []
        for layer in self.layers.values():
            act, grad = layer.act.summary(), layer.grad.summary()
            if act is not None or grad is not None:
                rows.append({"name": layer.name, "type": layer.type, "act": act, "grad": grad})
        return rows

    def remove(self) -> None:
        """Uninstall the hooks."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def __enter__(self) -> RangeRecorder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()
