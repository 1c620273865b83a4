"""Deterministic batch sampling: micro-batch ``i`` is a pure function of (seed, i).

Each epoch is a permutation seeded by (seed, epoch), so a run resumed at any step sees the
same batches as an uninterrupted run, without saving sampler state.
"""

from __future__ import annotations

import torch


def epoch_permutation(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The order of ``n`` samples in ``epoch`` for ``seed`` (same on every machine and worker count)."""
    gen = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=gen)


def batch_indices(n: int, batch_size: int, seed: int, index: int) -> torch.Tensor:
    """Sample indices of micro-batch ``index``; incomplete tail batches are dropped (fixed batch shape)."""
    per_epoch = max(1, n // batch_size)
    epoch, pos = divmod(index, per_epoch)
    perm = epoch_permutation(n, seed, epoch)
    return perm[pos * batch_size : (pos + 1) * batch_size]
