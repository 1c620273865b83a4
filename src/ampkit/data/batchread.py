"""Read a batch of samples at their index offsets, checked, widened straight into one output tensor.

Both loaders build every batch here: the samples are grouped by shard and read in file order
(:mod:`ampkit.data.spans`: ``pread``, neighbours joined into one read into a reused buffer; or,
with ``map_bytes``, views of the mapped file, :mod:`ampkit.data.shardfiles`). Each sample's
checksum is checked on those bytes (:func:`ampkit.data.checksum.mismatch`), its JSON parsed and
checked, and its values written into its row of one batch tensor (:mod:`ampkit.data.batchfill`).
The batch tensor's memory comes from :mod:`ampkit.data.batchmem` (reused in the main process,
shared with it from DataLoader workers). Damaged samples are raised as
:class:`~ampkit.data.samples.ShardError` naming shard and key, or skipped and counted.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from ..errors import UsageError
from .batchfill import Fill
from .batchmem import OutputPool
from .forklock import ForkSafeLock
from .format import file_sha256
from .preprocess import PreprocessConfig
from .samples import (
    OnError,
    ShardError,
    ShardSet,
    Verify,
    check_checksum,
    check_meta,
    has_checksum,
    scan_shard,
    shard_damage,
)
from .shardfiles import ShardFiles
from .spans import Wanted, groups, read_group

log = logging.getLogger("ampkit.data")

OUTPUT_DTYPES: tuple[str, ...] = ("float32", "float16", "bfloat16", "stored")
"""``output_dtype`` of the loaders: float32 (widened and preprocessed in the loader), or a 2-byte
batch (``raw``) that ``finish_batch`` widens and preprocesses on the training device."""


def keep_batch(batch: Any) -> Any:
    """Collate function for datasets that build whole batches themselves (nothing to convert)."""
    return batch


def resolve_output(output_dtype: str | None, cfg: PreprocessConfig) -> str:
    """The loader's output kind; ``None`` means float32, or the stored dtype for ``cfg.on="device"``."""
    if output_dtype is None:
        return "stored" if cfg.on == "device" else "float32"
    if output_dtype not in OUTPUT_DTYPES:
        raise UsageError(f"output_dtype={output_dtype!r}; valid: {', '.join(OUTPUT_DTYPES)}")
    if output_dtype == "float32" and cfg.on == "device":
        raise UsageError(
            "output_dtype='float32' widens in the loader, PreprocessConfig(on='device') on the "
            "device; valid: output_dtype float16, bfloat16 or stored with on='device'"
        )
    return output_dtype


class BatchReader:
    """Builds batch dicts from global sample indices (one per dataset copy, i.e. per process)."""

    def __init__(
        self,
        shards: ShardSet,
        cfg: PreprocessConfig,
        output: str,
        on_error: OnError,
        verify: Verify,
        label: str | None,
        map_bytes: int = 0,
    ):
        self.shards, self.cfg, self.output = shards, cfg, output
        self.on_error, self.verify, self.label = on_error, verify, label
        self.skipped = 0
        """Damaged samples skipped by this process."""
        self._files = ShardFiles(map_bytes=map_bytes)
        self.pool = OutputPool()
        """Batch tensors written again once the caller has dropped them."""
        self._buf = np.empty(0, np.uint8)
        self._hashed: dict[int, dict[str, str]] = {}  # shard -> damaged keys found by its file hash
        self._warned: set[str] = set()
        self._lock = ForkSafeLock()  # one batch at a time: threads share the buffer and the files

    def __getstate__(self) -> dict[str, Any]:
        # descriptors and buffers stay in their process; another process opens its own
        state = dict(self.__dict__)
        state.update(
            _files=ShardFiles(map_bytes=self._files.map_bytes),
            pool=OutputPool(),
            _buf=np.empty(0, np.uint8),
            _hashed={},
            _warned=set(),
        )
        return state

    def close(self) -> None:
        """Close the shard files this process holds."""
        with self._lock:
            self._files.close()

    def _buffer(self, n: int) -> np.ndarray:
        if len(self._buf) < n:
            self._buf = np.empty(max(n, 2 * len(self._buf)), np.uint8)
        return self._buf

    def _open(self, shard: int) -> tuple[int, int]:
        """Descriptor and size of ``shard``; the whole-file sha256 check on first open where due."""
        fd, size = self._files.get(shard, self.shards.path)
        if shard not in self._hashed:
            info = self.shards.shards[shard]
            # entries without a checksum of their own (hand-made indexes) fall back to the file's
            legacy = self.verify != "off" and not all(has_checksum(e) for e in info["samples"])
            if (self.verify == "shard" or legacy) and file_sha256(self.shards.path(shard)) != info["sha256"]:
                damaged = scan_shard(self.shards.path(shard), info["samples"])
                for e in info["samples"]:  # nothing can clear a sample without a checksum of its own
                    if not has_checksum(e):
                        damaged.setdefault(e["key"], "no checksum of its own to clear it")
                self._hashed[shard] = damaged  # only once the check is done: an interrupted one runs again
                shard_damage(info["name"], damaged, self.on_error)
            else:
                self._hashed[shard] = {}
        return fd, size

    def _damaged(self, shard: int, item: Wanted, reason: str, skipped: dict[int, str]) -> None:
        name, key = self.shards.shards[shard]["name"], str(item.entry["key"])
        if self.on_error == "raise":
            raise ShardError(name, key, reason)
        if name not in self._warned:
            self._warned.add(name)
            log.warning("%s, sample %s: %s; skipping damaged samples of this shard", name, key, reason)
        skipped[item.pos] = key
        self.skipped += 1

    def batch(self, indices: Sequence[int] | np.ndarray | torch.Tensor) -> dict[str, Any]:
        """The batch of global sample ``indices``, in that order (damaged ones left out under ``skip``)."""
        items: list[Wanted] = []
        by_shard: dict[int, list[Wanted]] = {}
        flat = (
            indices if isinstance(indices, list) else np.asarray(indices, dtype=np.int64).reshape(-1).tolist()
        )
        for pos, index in enumerate(flat):
            i = int(index)
            shard, entry = self.shards.locate(i)
            items.append(Wanted(pos, i, entry))
            by_shard.setdefault(shard, []).append(items[-1])
        fill = Fill(self, len(items))
        skipped: dict[int, str] = {}
        with self._lock:  # a batch reads into the one buffer, checks it, then widens it
            try:
                for shard in sorted(by_shard):
                    self._read_shard(shard, by_shard[shard], fill, skipped)
                return fill.finish(items, skipped)
            except BaseException:
                if fill.out is not None:  # a worker's pooled segment that will never be sent
                    self.pool.give_back(fill.out)
                raise

    def _read_shard(self, shard: int, items: list[Wanted], fill: Fill, skipped: dict[int, str]) -> None:
        try:
            fd, size = self._open(shard)
        except OSError as err:
            for it in sorted(items, key=lambda i: i.pos):
                self._damaged(shard, it, f"cannot open shard ({err.strerror or err})", skipped)
            return
        known = self._hashed.get(shard, {})
        for group in groups(items):
            good = []
            for it in group:
                end = max(it.hi, 0)
                if it.entry["key"] in known:
                    self._damaged(shard, it, known[it.entry["key"]], skipped)
                elif end > size:
                    what = "bin" if sum(it.entry["bin"]) > size else "json"
                    span = list(it.entry[what])
                    self._damaged(
                        shard,
                        it,
                        f"{what} {span} ends past the end of the file ({size} bytes; truncated?)",
                        skipped,
                    )
                else:
                    good.append(it)
            if good:
                self._read_group(fd, shard, good, fill, skipped)

    def _read_group(
        self, fd: int, shard: int, group: list[Wanted], fill: Fill, skipped: dict[int, str]
    ) -> None:
        mapped = self._files.view(shard)
        if mapped is not None:  # the bytes where the page cache holds them: no read, no copy
            buf = mapped
            where = {it.pos: (int(it.entry["bin"][0]), int(it.entry["bin"][1])) for it in group}
            jsons = {it.pos: (int(it.entry["json"][0]), int(it.entry["json"][1])) for it in group}
        else:
            try:
                buf, where, jsons = read_group(fd, group, self._buffer)
            except (OSError, ValueError) as err:
                for it in group:
                    self._damaged(shard, it, f"cannot read sample bytes ({err})", skipped)
                return
        for it in group:
            b0, bn = where[it.pos]
            j0, jn = jsons[it.pos]
            raw, js = buf[b0 : b0 + bn], buf[j0 : j0 + jn]
            try:
                if self.verify != "off":  # first: a damaged JSON is named by its checksum
                    check_checksum(raw, js, it.entry)
                meta = check_meta(js.tobytes(), bn, it.entry)
            except ValueError as err:
                self._damaged(shard, it, str(err), skipped)
                continue
            fill.put(it.pos, raw, meta)
