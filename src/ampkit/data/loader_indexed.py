"""Map-style dataset over shards: any sample read at the manifest's offsets.

webdataset streams tar files front to back and has no random access; the manifest records
where each member's bytes start, so a sample costs one ``pread`` (its ``.bin`` and ``.json``
lie next to each other) on a file this process keeps open. Use it for local or network file
systems with random access, for evaluation, and for tasks whose batches are a pure function of
the step (``get_batch``). :meth:`IndexedShards.loader` builds a ``DataLoader`` whose order follows
:mod:`ampkit.data.order` (same with any number of workers, each sample once per epoch across DDP
ranks, resumable mid-epoch). Batches are built by :class:`ampkit.data.batchread.BatchReader`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset, Sampler

from ..errors import UsageError
from .batchread import BatchReader, keep_batch, resolve_output
from .order import EpochPlan, Policy, Shuffle, epoch_order, resolve_rank
from .preprocess import PreprocessConfig
from .samples import OnError, ShardSet, Verify, check_options
from .shardfiles import MAP_BYTES


class PlanSampler(Sampler[int]):
    """Sample indices of one rank's epoch (see :class:`~ampkit.data.order.EpochPlan`); call ``set_epoch``."""

    def __init__(
        self,
        counts: Sequence[int],
        *,
        seed: int,
        epoch: int,
        shuffle: Shuffle,
        rank: int,
        world_size: int,
        policy: Policy,
        start: int,
    ):
        self.counts, self.seed, self.epoch, self.shuffle = list(counts), seed, epoch, shuffle
        self.rank, self.world_size, self.policy, self.start = rank, world_size, policy, start

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Move to ``epoch``, resuming after ``start`` samples of this rank's share."""
        self.epoch, self.start = epoch, start

    def plan(self) -> EpochPlan:
        """The current epoch's plan."""
        order = epoch_order(self.counts, self.seed, self.epoch, self.shuffle)
        return EpochPlan(order, self.rank, self.world_size, self.policy, start=self.start)

    def __iter__(self) -> Iterator[int]:
        return iter(self.plan().sequence().tolist())

    def __len__(self) -> int:
        return len(self.plan().sequence())


class IndexedShards(Dataset[dict[str, Any]]):
    """Shards read by manifest offsets; ``ds[i]`` is one sample, ``ds.get_batch(indices)`` a batch dict.

    Batches hold ``x`` (float32 after ``preprocess``), ``index``, ``key``, ``meta``, ``skipped``
    and ``y`` when ``label`` names a field of the samples' ``meta``. ``output_dtype`` float16 or
    bfloat16 (or ``stored``) hands over the 2-byte values as ``raw`` with per-sample
    ``offset``/``slope``/``intercept`` instead, for :func:`ampkit.data.preprocess.finish_batch`
    to widen and preprocess on the training device. Every sample's checksum is checked as it is
    read (``verify="sample"``); ``verify="shard"`` also checks each shard file's sha256 the first
    time a process opens it, ``"off"`` trusts the files. ``on_error`` says what a damaged
    sample does (see :mod:`ampkit.data.samples`). Up to ``map_bytes`` of shard files (default
    4 GiB) are mapped into memory so that a sample is checked and widened where the page cache
    holds it, without a copy (:mod:`ampkit.data.shardfiles`); ``map_bytes=0`` reads with ``pread``.
    """

    def __init__(
        self,
        directory: str | Path,
        *,
        preprocess: PreprocessConfig | None = None,
        on_error: OnError = "raise",
        verify: Verify = "sample",
        label: str | None = None,
        output_dtype: str | None = None,
        map_bytes: int = MAP_BYTES,
    ):
        check_options(on_error, verify)
        if isinstance(map_bytes, bool) or not isinstance(map_bytes, int | np.integer) or map_bytes < 0:
            raise UsageError(f"map_bytes={map_bytes!r}; valid: an int >= 0 (0 reads every sample with pread)")
        map_bytes = int(map_bytes)
        self.shards = ShardSet.open(directory)
        """The manifest view."""
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
        self.reader = BatchReader(
            self.shards, self.preprocess, self.output_dtype, on_error, verify, label, map_bytes
        )
        """Builds the batches; holds this process's open files."""

    @property
    def skipped(self) -> int:
        """Damaged samples skipped by this process (workers count their own; batches list them)."""
        return self.reader.skipped

    def __len__(self) -> int:
        return len(self.shards)

    def get_batch(self, indices: Sequence[int] | np.ndarray | torch.Tensor) -> dict[str, Any]:
        """The batch of global sample ``indices``, in that order (damaged ones left out in skip mode)."""
        return self.reader.batch(indices)

    def __getitem__(self, index: int | Sequence[int]) -> dict[str, Any]:
        """Sample ``index`` as a batch of one, or the batch of a list of indices (how ``loader`` fetches)."""
        return self.reader.batch([index] if isinstance(index, int | np.integer) else index)

    def close(self) -> None:
        """Close the shard files this process holds."""
        self.reader.close()

    def loader(
        self,
        batch_size: int,
        *,
        seed: int = 0,
        epoch: int = 0,
        shuffle: Shuffle = "global",
        rank: int | None = None,
        world_size: int | None = None,
        policy: Policy = "pad",
        start: int = 0,
        drop_last: bool = False,
        **kwargs: Any,
    ) -> DataLoader:
        """A DataLoader over one rank's share of epoch ``epoch`` (``kwargs``: num_workers, pin_memory, ...).

        Advance epochs with ``loader.sampler.sampler.set_epoch(e)``; resume mid-epoch with
        ``start`` = samples of this rank's share already consumed. ``pin_memory`` defaults to
        ``torch.cuda.is_available()``.
        """
        r, w = resolve_rank(rank, world_size)
        sampler = PlanSampler(
            self.shards.counts,
            seed=seed,
            epoch=epoch,
            shuffle=shuffle,
            rank=r,
            world_size=w,
            policy=policy,
            start=start,
        )
        batches = BatchSampler(sampler, batch_size, drop_last)
        kwargs.setdefault("pin_memory", torch.cuda.is_available())
        # batch_size=None: each BatchSampler item (a list of indices) is one ds[...] call, one batch
        return DataLoader(self, sampler=batches, batch_size=None, collate_fn=keep_batch, **kwargs)
