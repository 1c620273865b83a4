"""Epoch order: which samples a rank and a DataLoader worker read, and in what order.

The order of an epoch is a seeded permutation of ``(seed, epoch)`` over global sample indices;
it never depends on the number of workers. Each rank takes a contiguous span of that order
(``pad``/``drop``/``uneven`` say what happens when the sample count does not divide by the world
size), cuts it into batches, and DataLoader worker ``w`` of ``K`` builds batches ``w, w+K, ...``.
``torch.utils.data.DataLoader`` hands out worker results round-robin, so the batches reach the
training loop in plan order whatever ``K`` is. Samples, not shards, are dealt out: there are
never idle workers or ranks waiting on a collective because there are fewer shards than readers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from ..errors import UsageError

Policy = Literal["pad", "drop", "uneven"]
"""How a rank's share is sized when ranks do not divide the sample count.

``pad``: every rank gets ``ceil(n / world)``, the last span wraps around to the start of the
epoch's order (some samples read twice; equal step counts, the DDP training default).
``drop``: every rank gets ``floor(n / world)`` (some samples unread this epoch).
``uneven``: spans differ by at most one and every sample is read exactly once (evaluation).
"""

Shuffle = Literal["global", "shard", "none"]
"""``global``: one permutation of all samples; ``shard``: shards in a permuted order, samples
in a permuted order within each shard (what a streaming reader can follow); ``none``: stored order."""

POLICIES: tuple[str, ...] = ("pad", "drop", "uneven")
SHUFFLES: tuple[str, ...] = ("global", "shard", "none")


def _rng(seed: int, epoch: int, stream: int) -> np.random.Generator:
    # SeedSequence mixes the words, so (seed, epoch) pairs give independent permutations.
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, int(epoch), stream])


def epoch_order(counts: Sequence[int], seed: int, epoch: int, shuffle: Shuffle = "global") -> np.ndarray:
    """Global sample indices in the order of epoch ``epoch``.

    ``counts`` are the sample counts of the shards; shard ``s`` holds the global indices
    ``sum(counts[:s]) .. sum(counts[:s+1]) - 1``.
    """
    if shuffle not in SHUFFLES:
        raise UsageError(f"shuffle={shuffle!r}; valid: {', '.join(SHUFFLES)}")
    n = int(sum(counts))
    if shuffle == "none":
        return np.arange(n, dtype=np.int64)
    if shuffle == "global":
        return _rng(seed, epoch, 0).permutation(n).astype(np.int64)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    rng = _rng(seed, epoch, 1)
    parts = [starts[s] + rng.permutation(int(counts[s])) for s in rng.permutation(len(counts))]
    return np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, np.int64)


def rank_span(n: int, rank: int, world: int, policy: Policy) -> np.ndarray:
    """Positions (into an epoch's order of ``n`` samples) that ``rank`` of ``world`` reads."""
    if policy not in POLICIES:
        raise UsageError(f"policy={policy!r}; valid: {', '.join(POLICIES)}")
    if not 0 <= rank < world:
        raise UsageError(f"rank {rank} is outside world size {world}")
    if policy == "uneven":
        base, extra = divmod(n, world)
        start = rank * base + min(rank, extra)
        return np.arange(start, start + base + (rank < extra), dtype=np.int64)
    if policy == "drop":
        size = n // world
        return np.arange(rank * size, (rank + 1) * size, dtype=np.int64)
    if n == 0:
        return np.zeros(0, np.int64)
    size = -(-n // world)
    return (rank * size + np.arange(size, dtype=np.int64)) % n


def resolve_rank(rank: int | None, world_size: int | None) -> tuple[int, int]:
    """``(rank, world_size)``: the given values, else torch.distributed's when initialised, else (0, 1)."""
    dist = torch.distributed
    live = dist.is_available() and dist.is_initialized()
    r = rank if rank is not None else (dist.get_rank() if live else 0)
    w = world_size if world_size is not None else (dist.get_world_size() if live else 1)
    if w < 1 or not 0 <= r < w:
        raise UsageError(f"rank {r} / world size {w}: need 0 <= rank < world_size")
    return r, w


def current_worker() -> tuple[int, int]:
    """``(worker id, number of workers)`` of the DataLoader worker running this code, (0, 1) outside one."""
    info = torch.utils.data.get_worker_info()
    return (0, 1) if info is None else (info.id, info.num_workers)


@dataclass(frozen=True)
class EpochPlan:
    """One rank's read plan for one epoch: its samples from ``start`` on, cut into batches."""

    order: np.ndarray
    """The epoch's global order (from :func:`epoch_order`)."""
    rank: int = 0
    """This process's rank."""
    world_size: int = 1
    """Number of ranks."""
    policy: Policy = "pad"
    """How uneven shares are handled (see :data:`Policy`)."""
    batch_size: int = 1
    """Samples per batch."""
    start: int = 0
    """Samples of this rank's share already consumed (mid-epoch resume)."""
    drop_last: bool = False
    """Drop a final batch shorter than ``batch_size``."""

    def sequence(self) -> np.ndarray:
        """Global sample indices this rank still reads, in order."""
        span = rank_span(len(self.order), self.rank, self.world_size, self.policy)
        return self.order[span][self.start :]

    def batches(self) -> list[np.ndarray]:
        """This rank's remaining batches, in order."""
        seq = self.sequence()
        cut = range(0, len(seq), self.batch_size)
        out = [seq[i : i + self.batch_size] for i in cut]
        if self.drop_last and out and len(out[-1]) < self.batch_size:
            out.pop()
        return out

    def worker_batches(self, worker: int, num_workers: int) -> list[np.ndarray]:
        """The batches DataLoader worker ``worker`` of ``num_workers`` builds (every K-th)."""
        return self.batches()[worker::num_workers]
