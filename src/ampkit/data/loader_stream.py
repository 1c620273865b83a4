"""Streaming dataset over shards: whole batches built inside the DataLoader workers.

Each DataLoader worker knows its batches from :class:`~ampkit.data.order.EpochPlan` (samples
are dealt out by index, never by shard, so fewer shards than ranks x workers cannot starve a
reader or hang DDP) and builds them itself, one at a time, reading each batch's samples at the
offsets the manifest records, in file order (consecutive samples in one read), with each
sample's checksum checked as it is read (:class:`ampkit.data.batchread.BatchReader`). Nothing is
held between batches, a damaged sample is named or skipped and counted on its own, and a
truncated shard costs only the samples past the cut: the loader goes on with the rest.

Compared with :class:`~ampkit.data.loader_indexed.IndexedShards` the order follows the shards
(``shuffle="shard"``: shards permuted, samples permuted within each), so a worker's reads stay
within one shard file at a time; with ``shuffle="none"`` they run front to back.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, IterableDataset

from .batchread import BatchReader, keep_batch, resolve_output
from .order import EpochPlan, Policy, current_worker, epoch_order, resolve_rank
from .preprocess import PreprocessConfig
from .samples import OnError, ShardSet, Verify, check_options


class StreamingShards(IterableDataset[dict[str, Any]]):
    """Batches streamed from shards in the order of ``(seed, epoch)``; iterate it through :meth:`loader`.

    ``shuffle="shard"`` permutes shards and samples within each shard (the order a stream can
    follow); ``"none"`` keeps the stored order. Batch dicts are those of
    :class:`~ampkit.data.loader_indexed.IndexedShards` (``output_dtype``, ``verify``, ``on_error``
    alike). ``set_epoch`` before each epoch; ``start`` resumes after that many samples of this
    rank's share.
    """

    def __init__(
        self,
        directory: str | Path,
        batch_size: int,
        *,
        seed: int = 0,
        epoch: int = 0,
        shuffle: str = "shard",
        rank: int | None = None,
        world_size: int | None = None,
        policy: Policy = "pad",
        start: int = 0,
        drop_last: bool = False,
        preprocess: PreprocessConfig | None = None,
        on_error: OnError = "raise",
        verify: Verify = "sample",
        label: str | None = None,
        output_dtype: str | None = None,
    ):
        if shuffle not in ("shard", "none"):
            raise ValueError(f"shuffle={shuffle!r}; a stream follows 'shard' or 'none'")
        check_options(on_error, verify)
        self.shards = ShardSet.open(directory)
        """The manifest view."""
        self.rank, self.world_size = resolve_rank(rank, world_size)
        self.batch_size, self.seed, self.epoch, self.shuffle = batch_size, seed, epoch, shuffle
        self.policy, self.start, self.drop_last = policy, start, drop_last
        self.preprocess = preprocess or PreprocessConfig()
        """The float32 chain applied to each batch (here, or by ``finish_batch`` for 2-byte output)."""
        self.output_dtype = resolve_output(output_dtype, self.preprocess)
        """``float32``, ``float16``, ``bfloat16`` or ``stored``."""
        self.on_error: OnError = on_error
        """``raise`` or ``skip`` damaged samples."""
        self.verify: Verify = verify
        """``sample``, ``shard`` or ``off`` (see :data:`ampkit.data.samples.Verify`)."""
        self.label = label
        """Field of each sample's ``meta`` returned as ``y``; None: no ``y``."""
        self.reader = BatchReader(self.shards, self.preprocess, self.output_dtype, on_error, verify, label)
        """Builds the batches; holds this process's open files."""

    @property
    def skipped(self) -> int:
        """Damaged samples skipped by this process (workers count their own; batches list them)."""
        return self.reader.skipped

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Move to ``epoch`` (call before iterating; DataLoader workers copy the dataset per epoch)."""
        self.epoch, self.start = epoch, start

    def plan(self) -> EpochPlan:
        """This rank's plan for the current epoch."""
        order = epoch_order(self.shards.counts, self.seed, self.epoch, self.shuffle)  # type: ignore[arg-type]
        return EpochPlan(
            order, self.rank, self.world_size, self.policy, self.batch_size, self.start, self.drop_last
        )

    def __len__(self) -> int:
        """Batches this rank yields this epoch."""
        return len(self.plan().batches())

    def __iter__(self) -> Iterator[dict[str, Any]]:
        worker, workers = current_worker()
        for indices in self.plan().worker_batches(worker, workers):
            yield self.reader.batch(indices)

    def close(self) -> None:
        """Close the shard files this process holds."""
        self.reader.close()

    def loader(self, **kwargs: Any) -> DataLoader:
        """A DataLoader yielding this dataset's batches (``kwargs``: num_workers, pin_memory, ...).

        ``pin_memory`` defaults to ``torch.cuda.is_available()``.
        """
        kwargs.setdefault("pin_memory", torch.cuda.is_available())
        kwargs.setdefault("collate_fn", keep_batch)  # batches are built whole: nothing to convert
        return DataLoader(self, batch_size=None, **kwargs)
