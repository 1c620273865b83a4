"""Streaming dataset over shards, on webdataset's tar pipeline.

Each DataLoader worker knows its batches from :class:`~ampkit.data.order.EpochPlan` (samples
are dealt out by index, never by shard, so fewer shards than ranks x workers cannot starve a
reader or hang DDP). It streams the shards its batches touch, in the epoch's shard order, with
``wds.DataPipeline`` + webdataset's tar expander and key grouper, extracting only its own
members. Each shard is hashed while it streams, and its samples are held until the hash is
known, so nothing from a damaged shard is used before it is localised (see
:mod:`ampkit.data.samples`). The manifest says which samples the stream should have delivered:
those cut off by a damaged tar header (``tarfile`` silently stops there) but intact at their
offsets are read by offset; those past the end of a truncated file are damaged, raised or
skipped and counted, and the loader goes on with the next shard instead of dying.

``wds.tarfile_to_samples`` is its two stages (tar expander, key grouper) after webdataset's
``url_opener``; the opener is replaced by one that hashes the bytes as they stream.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import webdataset as wds
from torch.utils.data import DataLoader, IterableDataset
from webdataset.tariterators import group_by_keys, tar_file_expander

from .format import read_member
from .order import EpochPlan, Policy, current_worker, epoch_order, resolve_rank
from .preprocess import PreprocessConfig
from .samples import Decoded, OnError, ShardError, ShardSet, assemble, decode, scan_shard, shard_damage


class HashingReader:
    """A read-only file that feeds every byte it returns into sha256 (hash while streaming)."""

    def __init__(self, fh: BinaryIO):
        self.fh, self.hash = fh, hashlib.sha256()

    def read(self, n: int = -1) -> bytes:
        """Read and hash up to ``n`` bytes."""
        data = self.fh.read(n)
        self.hash.update(data)
        return data

    def finish(self) -> str:
        """Hash what the tar reader left unread (end-of-archive padding), close, return the digest."""
        for block in iter(lambda: self.fh.read(1 << 20), b""):
            self.hash.update(block)
        self.fh.close()
        return self.hash.hexdigest()


class StreamingShards(IterableDataset[dict[str, Any]]):
    """Batches streamed from shards in the order of ``(seed, epoch)``; iterate it through :meth:`loader`.

    ``shuffle="shard"`` permutes shards and samples within each shard (the order a stream can
    follow); ``"none"`` keeps the stored order. Batch dicts are those of
    :func:`ampkit.data.samples.assemble`. ``set_epoch`` before each epoch; ``start`` resumes
    after that many samples of this rank's share.
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
        label: str | None = None,
    ):
        if shuffle not in ("shard", "none"):
            raise ValueError(f"shuffle={shuffle!r}; a stream follows 'shard' or 'none'")
        if on_error not in ("raise", "skip"):
            raise ValueError(f"on_error={on_error!r}; valid: raise, skip")
        self.shards = ShardSet.open(directory)
        """The manifest view."""
        self.rank, self.world_size = resolve_rank(rank, world_size)
        self.batch_size, self.seed, self.epoch, self.shuffle = batch_size, seed, epoch, shuffle
        self.policy, self.start, self.drop_last = policy, start, drop_last
        self.preprocess = preprocess or PreprocessConfig()
        """The float32 chain applied to each batch."""
        self.on_error: OnError = on_error
        """``raise`` or ``skip`` damaged samples."""
        self.label = label
        """Field of each sample's ``meta`` returned as ``y``; None: no ``y``."""
        self.skipped = 0
        """Damaged samples skipped by this process (workers count their own; batches list them)."""

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

    def _shard_of(self, index: int) -> int:
        return int(np.searchsorted(self.shards.starts, index, side="right") - 1)

    def _stream(self, shard: int, wanted: set[str]) -> tuple[dict[str, dict[str, Any]], str, str | None]:
        """One pass over ``shard``: ``(samples by key, sha256 of the bytes read, stream error)``."""
        path = self.shards.path(shard)
        errors: list[str] = []

        def note(exn: Exception) -> bool:  # webdataset handler: remember, keep going
            errors.append(f"{type(exn).__name__}: {exn.args[0] if exn.args else exn}")
            return True

        try:
            reader = HashingReader(open(path, "rb"))  # noqa: SIM115 (closed by finish)
        except OSError as err:
            return {}, "", str(err)
        pipeline = wds.DataPipeline(
            lambda: iter([{"url": str(path), "stream": reader}]),  # the opened stream is the source
            wds.pipelinefilter(tar_file_expander)(
                handler=note, select_files=lambda name: name.split(".", 1)[0] in wanted
            ),
            wds.pipelinefilter(group_by_keys)(handler=note),
        )
        got = {s["__key__"]: s for s in pipeline if "bin" in s and "json" in s}
        return got, reader.finish(), errors[0] if errors else None

    def _read_shard(self, shard: int, keys: set[str]) -> dict[str, Decoded]:
        """This worker's samples of ``shard`` that are intact, by key (damaged ones raise or are left out)."""
        info = self.shards.shards[shard]
        got, digest, stream_error = self._stream(shard, keys)
        raw = {k: (v["bin"], v["json"]) for k, v in got.items()}
        damaged: dict[str, str] = {}
        suspect = digest != info["sha256"]
        starts = int(self.shards.starts[shard])
        entries = {e["key"]: (starts + i, e) for i, e in enumerate(info["samples"]) if e["key"] in keys}
        if suspect:  # localise over the whole shard, so every worker blames the same samples
            everywhere = scan_shard(self.shards.path(shard), info["samples"])
            shard_damage(info["name"], everywhere, self.on_error)
            damaged = {k: v for k, v in everywhere.items() if k in keys}
            lost = keys - set(raw) - set(damaged)
            if lost:  # intact by offsets, cut off by a damaged tar header: fetch them by offset
                with open(self.shards.path(shard), "rb") as fh:
                    for k in lost:
                        raw[k] = (
                            read_member(fh, entries[k][1]["bin"]),
                            read_member(fh, entries[k][1]["json"]),
                        )
        for key in sorted(keys - set(raw) - set(damaged)):
            damaged[key] = f"missing from the tar stream ({stream_error or 'stream ended early'})"
            if self.on_error == "raise":
                raise ShardError(info["name"], key, damaged[key])
        out: dict[str, Decoded] = {}
        for key in keys - set(damaged):
            index, entry = entries[key]
            try:
                out[key] = decode(index, raw[key][0], raw[key][1], entry, checked=suspect)
            except (ValueError, KeyError) as err:
                if self.on_error == "raise":
                    raise ShardError(info["name"], key, str(err)) from err
        return out

    def __iter__(self) -> Iterator[dict[str, Any]]:
        worker, workers = current_worker()
        batches = self.plan().worker_batches(worker, workers)
        flat = [int(i) for b in batches for i in b]
        cache: dict[int, Decoded | str] = {}
        done = 0
        # a "run" is a stretch of this worker's samples in one shard; the pad policy may revisit a shard
        for shard, run in itertools.groupby(flat, key=self._shard_of):
            wanted = {int(i): self.shards.locate(int(i))[1]["key"] for i in run}
            decoded = self._read_shard(shard, set(wanted.values()))
            for index, key in wanted.items():
                cache[index] = decoded.get(key, key)  # a key: damaged, skipped
            # emit every batch whose samples are all read (batches may straddle shards)
            while done < len(batches) and all(int(i) in cache for i in batches[done]):
                yield self._batch([cache[int(i)] for i in batches[done]])
                done += 1
            cache = {i: v for i, v in cache.items() if i in set(map(int, itertools.chain(*batches[done:])))}
        while done < len(batches):  # only empty batches can remain
            yield self._batch([])
            done += 1

    def _batch(self, got: list[Decoded | str]) -> dict[str, Any]:
        skipped = [g for g in got if isinstance(g, str)]
        self.skipped += len(skipped)
        samples = [g for g in got if isinstance(g, Decoded)]
        return assemble(samples, self.preprocess, self.label, skipped)

    def loader(self, **kwargs: Any) -> DataLoader:
        """A DataLoader yielding this dataset's batches (``kwargs``: num_workers, pin_memory, ...)."""
        return DataLoader(self, batch_size=None, **kwargs)
