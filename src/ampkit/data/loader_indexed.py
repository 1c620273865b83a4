"""Map-style dataset over shards: any sample by seek + read at the manifest's offsets.

webdataset streams tar files front to back and has no random access; the manifest records
where each member's bytes start, so a sample costs two ``seek``/``read`` calls. Use it for
local or network file systems with random access, for evaluation, and for tasks whose batches
are a pure function of the step (``get_batch``). :meth:`IndexedShards.loader` builds a
``DataLoader`` whose order follows :mod:`ampkit.data.order` (same with any number of workers,
each sample once per epoch across DDP ranks, resumable mid-epoch).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset, Sampler

from .format import file_sha256, read_member
from .order import EpochPlan, Policy, Shuffle, epoch_order, resolve_rank
from .preprocess import PreprocessConfig
from .samples import (
    Decoded,
    OnError,
    ShardError,
    ShardSet,
    Verify,
    assemble,
    decode,
    scan_shard,
    shard_damage,
)


def keep_batch(batch: Any) -> Any:
    """Collate function for datasets that assemble whole batches themselves (``ds[list_of_indices]``)."""
    return batch


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
    and ``y`` when ``label`` names a field of the samples' ``meta`` (see
    :func:`ampkit.data.samples.assemble`). Each process checks a shard's sha256 the first time
    it opens it (``verify="shard"``); with many processes each reading a little of many large
    shards, ``verify="sample"`` checks each sample's own sha256 as it is read instead, so the
    cost follows the bytes read. ``on_error`` says what a damaged sample does.
    """

    def __init__(
        self,
        directory: str | Path,
        *,
        preprocess: PreprocessConfig | None = None,
        on_error: OnError = "raise",
        verify: Verify = "shard",
        label: str | None = None,
    ):
        if on_error not in ("raise", "skip"):
            raise ValueError(f"on_error={on_error!r}; valid: raise, skip")
        self.shards = ShardSet.open(directory)
        """The manifest view."""
        self.preprocess = preprocess or PreprocessConfig()
        """The float32 chain applied to each batch."""
        self.on_error: OnError = on_error
        """``raise`` or ``skip`` damaged samples."""
        if verify not in ("shard", "sample", "off"):
            raise ValueError(f"verify={verify!r}; valid: shard, sample, off")
        self.verify: Verify = verify
        """``shard``: whole-file sha256 at first open; ``sample``: each sample's sha256 as it is read."""
        self.label = label
        """Field of each sample's ``meta`` returned as ``y``; None: no ``y``."""
        self.skipped = 0
        """Damaged samples skipped by this process (workers count their own; batches list them)."""
        self._files: dict[int, BinaryIO] = {}
        self._damaged: dict[int, dict[str, str]] = {}
        self._pid = os.getpid()

    def __len__(self) -> int:
        return len(self.shards)

    def __getstate__(self) -> dict[str, Any]:
        # open files do not travel to DataLoader workers; each process opens (and verifies) its own
        state = dict(self.__dict__)
        state["_files"], state["_damaged"] = {}, {}
        return state

    def _open(self, shard: int) -> BinaryIO:
        if self._pid != os.getpid():  # forked worker: the parent's handles share one file position
            self._files, self._damaged, self._pid = {}, {}, os.getpid()
        fh = self._files.get(shard)
        if fh is None:
            info = self.shards.shards[shard]
            path = self.shards.path(shard)
            if self.verify == "shard" and file_sha256(path) != info["sha256"]:
                damaged = scan_shard(path, info["samples"])
                shard_damage(info["name"], damaged, self.on_error)
                self._damaged[shard] = damaged
            fh = self._files[shard] = open(path, "rb")  # noqa: SIM115 (kept open; closed by close())
        return fh

    def _read(self, index: int) -> Decoded | str:
        """The decoded sample, or its key when it is damaged and skipped."""
        shard, entry = self.shards.locate(index)
        name = self.shards.shards[shard]["name"]
        try:
            fh = self._open(shard)
            damaged = self._damaged.get(shard)
            if damaged and entry["key"] in damaged:
                raise ShardError(name, entry["key"], damaged[entry["key"]])
            bin_bytes, json_bytes = read_member(fh, entry["bin"]), read_member(fh, entry["json"])
            checked = damaged is not None or self.verify == "sample"
            return decode(index, bin_bytes, json_bytes, entry, checked=checked)
        except ShardError:
            if self.on_error == "raise":
                raise
        except (OSError, ValueError) as err:
            if self.on_error == "raise":
                raise ShardError(name, entry["key"], str(err)) from err
        self.skipped += 1
        return str(entry["key"])

    def get_batch(self, indices: Sequence[int] | np.ndarray | torch.Tensor) -> dict[str, Any]:
        """The batch of global sample ``indices``, in that order (damaged ones left out in skip mode)."""
        got = [self._read(int(i)) for i in indices]
        samples = [g for g in got if isinstance(g, Decoded)]
        return assemble(samples, self.preprocess, self.label, [g for g in got if isinstance(g, str)])

    def __getitem__(self, index: int | Sequence[int]) -> dict[str, Any]:
        """Sample ``index`` as a batch of one, or the batch of a list of indices (how ``loader`` fetches)."""
        return self.get_batch([index] if isinstance(index, int | np.integer) else index)

    def close(self) -> None:
        """Close the shard files this process holds."""
        for fh in self._files.values():
            fh.close()
        self._files = {}

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
        ``start`` = samples of this rank's share already consumed.
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
        # batch_size=None: each BatchSampler item (a list of indices) is one ds[...] call, one batch
        return DataLoader(self, sampler=batches, batch_size=None, collate_fn=keep_batch, **kwargs)
