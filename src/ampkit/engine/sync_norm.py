"""BatchNorm over the global batch of a multi-process run, on any device (gloo on CPU included).

With the batch split across ranks, plain BatchNorm would normalise each rank's slice with
that slice's statistics, so N ranks x B/N would not train like 1 rank x B.
``torch.nn.SyncBatchNorm`` fixes that only on GPUs; :class:`GlobalBatchNorm` does it with
two differentiable all-reduces (sum, then centred sum of squares: the two-pass variance that
matches the native kernel to fp32 rounding), so it also runs under gloo on CPUs.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn


class _AllReduceSum(torch.autograd.Function):
    """Sum over ranks whose backward sums the gradients over ranks too (every rank's loss uses it)."""

    @staticmethod
    def forward(ctx: object, tensor: torch.Tensor) -> torch.Tensor:
        out = tensor.clone()
        dist.all_reduce(out)
        return out

    @staticmethod
    def backward(ctx: object, grad: torch.Tensor) -> torch.Tensor:
        out = grad.clone()
        dist.all_reduce(out)
        return out


def all_reduce(tensor: torch.Tensor) -> torch.Tensor:
    """Differentiable sum of ``tensor`` over all ranks."""
    return _AllReduceSum.apply(tensor)  # type: ignore[no-any-return]


class GlobalBatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm whose training statistics cover every rank's slice; plain BatchNorm otherwise."""

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {input.dim()}D input)")

    def _syncing(self) -> bool:
        return self.training and dist.is_initialized() and dist.get_world_size() > 1

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if not self._syncing():
            return super().forward(input)
        self._check_input_dim(input)
        dims = [0, *range(2, input.dim())]
        shape = [1, -1] + [1] * (input.dim() - 2)
        x = input.float()  # statistics in fp32, as the native kernel computes them for half inputs
        local = torch.cat([x.sum(dims), x.new_tensor([x.numel() // x.shape[1]])])
        total = all_reduce(local)
        count = total[-1]
        mean = total[:-1] / count
        centred = x - mean.view(shape)
        var = all_reduce((centred * centred).sum(dims)) / count
        out = centred * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            out = out * self.weight.float().view(shape) + self.bias.float().view(shape)
        self._track(mean.detach(), var.detach(), count.detach())
        return out.to(input.dtype)

    @torch.no_grad()
    def _track(self, mean: torch.Tensor, var: torch.Tensor, count: torch.Tensor) -> None:
        """Running statistics exactly as ``_BatchNorm`` updates them (unbiased variance)."""
        if not self.track_running_stats or self.running_mean is None or self.running_var is None:
            return
        assert self.num_batches_tracked is not None
        self.num_batches_tracked.add_(1)
        factor = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
        unbiased = var * count / (count - 1).clamp(min=1)
        self.running_mean.mul_(1 - factor).add_(mean.to(self.running_mean.dtype), alpha=factor)
        self.running_var.mul_(1 - factor).add_(unbiased.to(self.running_var.dtype), alpha=factor)


def convert_batch_norms(module: nn.Module) -> nn.Module:
    """Replace every BatchNorm1d/2d/3d in ``module`` by a :class:`GlobalBatchNorm` with the same state.

    Call before ``Precision.prepare``: that installs hooks on norm layers, which a swap would drop.
    """
    if isinstance(module, nn.modules.batchnorm._BatchNorm) and not isinstance(
        module, (GlobalBatchNorm, nn.SyncBatchNorm)
    ):
        new = GlobalBatchNorm(
            module.num_features, module.eps, module.momentum, module.affine, module.track_running_stats
        )
        new.load_state_dict(module.state_dict())
        new.to(next(iter(module.state_dict().values()), torch.empty(0)).device)
        new.train(module.training)
        return new
    for name, child in module.named_children():
        new_child = convert_batch_norms(child)
        if new_child is not child:
            setattr(module, name, new_child)
    return module
