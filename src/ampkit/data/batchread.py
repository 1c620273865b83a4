"""Read a batch of samples at their index offsets, checked, widened straight into one output tensor.

Both loaders build every batch here. The manifest records where each sample's ``.bin`` and
``.json`` bytes lie in its shard, so a batch costs no tar parsing: its samples are grouped by
shard and read in file order, consecutive samples with one ``preadv`` into a buffer that is
reused from batch to batch (:class:`ShardFiles` keeps the files open; ``pread`` needs no seek,
so forked DataLoader workers share the descriptors safely). Each sample's checksum is checked
on the buffer (:func:`ampkit.data.samples.check_checksum`), its JSON parsed and checked, and its
values written into row ``i`` of a batch tensor allocated once per batch: float32 with the
widening (``copy_`` from a float16/bfloat16/int16 view of the buffer) and the elementwise
preprocessing done per row while the row is in the CPU cache, or the 2-byte values as they are
(``output_dtype`` float16/bfloat16/stored) for the training device to widen. Inside a DataLoader
worker the batch tensor is allocated in shared memory, so handing it to the main process copies
nothing. No per-sample ``bytes``, no ``torch.stack``.
"""

from __future__ import annotations

import logging
import math
import os
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import get_worker_info

from ..errors import UsageError
from .format import STORED_DTYPES, file_sha256
from .preprocess import PreprocessConfig, reshape, scale_
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

log = logging.getLogger("ampkit.data")

OUTPUT_DTYPES: tuple[str, ...] = ("float32", "float16", "bfloat16", "stored")
"""``output_dtype`` of the loaders: float32 (widened and preprocessed in the loader), or a 2-byte
batch (``raw``) that ``finish_batch`` widens and preprocesses on the training device."""
_TORCH = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16, "int16": torch.int16}
_GAP = 1 << 16
"""Samples closer than this in a shard are read with one ``preadv`` (the gap is read and ignored)."""
_GROUP = 64 << 20
"""Largest read that joins several samples."""


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


class ShardFiles:
    """Open shard files of this process (least recently used closed beyond ``max_open``)."""

    def __init__(self, max_open: int = 64):
        self.max_open = max_open
        self._open: OrderedDict[int, tuple[int, int]] = OrderedDict()

    def get(self, shard: int, path: Callable[[int], Path]) -> tuple[int, int]:
        """``(file descriptor, size in bytes)`` of ``shard``, opened on first use (OSError if it cannot be)."""
        got = self._open.get(shard)
        if got is not None:
            if len(self._open) > 1:
                self._open.move_to_end(shard)
            return got
        fd = os.open(path(shard), os.O_RDONLY | getattr(os, "O_BINARY", 0) | getattr(os, "O_CLOEXEC", 0))
        try:
            got = (fd, os.fstat(fd).st_size)
        except OSError:
            os.close(fd)
            raise
        self._open[shard] = got
        while len(self._open) > self.max_open:
            os.close(self._open.popitem(last=False)[1][0])
        return got

    def close(self) -> None:
        """Close every file."""
        while self._open:
            try:
                os.close(self._open.popitem()[1][0])
            except OSError:
                pass

    def __del__(self) -> None:
        self.close()


def pread_into(fd: int, buf: memoryview, offset: int) -> None:
    """Fill ``buf`` from byte ``offset`` of ``fd`` (no seek; ValueError when the file ends first)."""
    done = 0
    while done < len(buf):
        if hasattr(os, "preadv"):
            got = os.preadv(fd, [buf[done:]], offset + done)
        else:  # pragma: no cover (platforms without preadv)
            data = os.pread(fd, len(buf) - done, offset + done)
            buf[done : done + len(data)] = data
            got = len(data)
        if got == 0:
            raise ValueError(f"short read at byte {offset + done}: the file ended (truncated while reading?)")
        done += got


class _Item:
    """One requested sample: its row in the batch, global index, index entry and byte range."""

    __slots__ = ("pos", "index", "entry", "lo", "hi", "compact")

    def __init__(self, pos: int, index: int, entry: dict[str, Any]):
        self.pos, self.index, self.entry = pos, index, entry
        (b0, bn), (j0, jn) = entry["bin"], entry["json"]
        self.lo: int = min(b0, j0)
        """First byte of the sample (its ``.bin`` or ``.json``)."""
        self.hi: int = max(b0 + bn, j0 + jn)
        """End of the sample's bytes."""
        self.compact: bool = self.hi - self.lo <= bn + jn + 2 * _GAP
        """Bin and JSON lie close together: one read covers both."""


def _groups(items: list[_Item]) -> list[list[_Item]]:
    """Items of one shard in file order, joined into runs that one read covers."""
    out: list[list[_Item]] = []
    lo = hi = 0
    for it in sorted(items, key=lambda i: (i.lo, i.pos)):
        if out and it.compact and out[-1][-1].compact and it.lo <= hi + _GAP and max(hi, it.hi) - lo <= _GROUP:
            out[-1].append(it)
            hi = max(hi, it.hi)
        else:
            out.append([it])
            lo, hi = it.lo, it.hi
    return out


def _shared_empty(shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    """A tensor in shared memory: a DataLoader worker's batch, handed to the main process without a copy."""
    storage = torch.UntypedStorage._new_shared(max(1, math.prod(shape)) * dtype.itemsize)
    return torch.empty(0, dtype=dtype).set_(storage, 0, shape)


_use_count = getattr(torch._C, "_storage_Use_Count", None)


def _users(t: torch.Tensor) -> int:
    """Tensors (views included) referring to ``t``'s memory, plus one for the call's own handle."""
    return int(_use_count(t.untyped_storage()._cdata)) if _use_count is not None else -1


_ALONE = _users(torch.empty(1))
"""What :func:`_users` says of a tensor nothing else refers to."""


class OutputPool:
    """Batch tensors of this process, written again once nothing refers to them any more.

    A fresh 28 MB batch costs ~7000 page faults, and zeroing every page, before the first value
    is written: more than the widening itself. A training loop drops batch ``k`` while it asks for
    batch ``k + 2`` (``for batch in loader`` still holds ``k + 1``), so a few tensors per shape
    serve a whole epoch. A tensor is reused only when no tensor or view but the pool's own refers
    to its memory (torch's storage use count; batches are handed out as views, so a caller's
    reference always counts) and it was never moved to shared memory (sent to another process).
    Inside a DataLoader worker batches are allocated in shared memory instead and never reused.
    """

    def __init__(self, keep: int = 3):
        self.keep = keep
        self._tensors: list[torch.Tensor] = []

    def take(self, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
        """A tensor of ``shape``/``dtype`` to fill (contents undefined)."""
        if get_worker_info() is not None:
            return _shared_empty(shape, dtype)
        for t in self._tensors:
            if t.dtype == dtype and t.shape == shape and _users(t) == _ALONE and not t.untyped_storage().is_shared():
                return t
        t = torch.empty(shape, dtype=dtype)
        if _ALONE > 0 and _users(t) == _ALONE:
            self._tensors.append(t)
            if len(self._tensors) > self.keep:
                self._tensors.pop(0)
        return t


def _values(raw: np.ndarray, dtype: str) -> torch.Tensor:
    """The stored values of a sample as a flat tensor viewing ``raw`` (bytes in the read buffer)."""
    if dtype == "float16":
        return torch.from_numpy(raw.view(np.float16))
    t = torch.from_numpy(raw.view(np.int16))
    return t.view(torch.bfloat16) if dtype == "bfloat16" else t


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
    ):
        self.shards, self.cfg, self.output = shards, cfg, output
        self.on_error, self.verify, self.label = on_error, verify, label
        self.skipped = 0
        """Damaged samples skipped by this process."""
        self._files = ShardFiles()
        self.pool = OutputPool()
        """Batch tensors written again once the caller has dropped them."""
        self._buf = np.empty(0, np.uint8)
        self._hashed: dict[int, dict[str, str]] = {}  # shard -> damaged keys found by its file hash
        self._warned: set[str] = set()

    def __getstate__(self) -> dict[str, Any]:
        # descriptors and buffers stay in their process; another process opens its own
        state = dict(self.__dict__)
        state.update(_files=ShardFiles(), pool=OutputPool(), _buf=np.empty(0, np.uint8), _hashed={}, _warned=set())
        return state

    def close(self) -> None:
        """Close the shard files this process holds."""
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
            self._hashed[shard] = {}
            if (self.verify == "shard" or legacy) and file_sha256(self.shards.path(shard)) != info["sha256"]:
                damaged = scan_shard(self.shards.path(shard), info["samples"])
                for e in info["samples"]:  # nothing can clear a sample without a checksum of its own
                    if not has_checksum(e):
                        damaged.setdefault(e["key"], "no checksum of its own to clear it")
                self._hashed[shard] = damaged
                shard_damage(info["name"], damaged, self.on_error)
        return fd, size

    def _damaged(self, shard: int, item: _Item, reason: str, skipped: dict[int, str]) -> None:
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
        items: list[_Item] = []
        by_shard: dict[int, list[_Item]] = {}
        for pos, i in enumerate(np.asarray(indices, dtype=np.int64).reshape(-1).tolist()):
            shard, entry = self.shards.locate(i)
            items.append(_Item(pos, i, entry))
            by_shard.setdefault(shard, []).append(items[-1])
        fill = _Fill(self, len(items))
        skipped: dict[int, str] = {}
        for shard in sorted(by_shard):
            self._read_shard(shard, by_shard[shard], fill, skipped)
        return fill.finish(items, skipped)

    def _read_shard(self, shard: int, items: list[_Item], fill: _Fill, skipped: dict[int, str]) -> None:
        try:
            fd, size = self._open(shard)
        except OSError as err:
            for it in sorted(items, key=lambda i: i.pos):
                self._damaged(shard, it, f"cannot open shard ({err.strerror or err})", skipped)
            return
        known = self._hashed.get(shard, {})
        for group in _groups(items):
            good = []
            for it in group:
                end = max(it.hi, 0)
                if it.entry["key"] in known:
                    self._damaged(shard, it, known[it.entry["key"]], skipped)
                elif end > size:
                    what = "bin" if sum(it.entry["bin"]) > size else "json"
                    span = list(it.entry[what])
                    self._damaged(
                        shard, it, f"{what} {span} ends past the end of the file ({size} bytes; truncated?)", skipped
                    )
                else:
                    good.append(it)
            if good:
                self._read_group(fd, shard, good, fill, skipped)

    def _read_group(self, fd: int, shard: int, group: list[_Item], fill: _Fill, skipped: dict[int, str]) -> None:
        if len(group) == 1 and not group[0].compact:  # bin and JSON far apart: two reads
            (b_off, b_len), (j_off, j_len) = group[0].entry["bin"], group[0].entry["json"]
            buf = self._buffer(b_len + j_len)
            where = {group[0].pos: (0, b_len)}
            jsons = {group[0].pos: (b_len, j_len)}
            reads = [(b_off, 0, b_len), (j_off, b_len, j_len)]
        else:
            lo, hi = group[0].lo, max(it.hi for it in group)
            buf = self._buffer(hi - lo)
            where = {it.pos: (int(it.entry["bin"][0]) - lo, int(it.entry["bin"][1])) for it in group}
            jsons = {it.pos: (int(it.entry["json"][0]) - lo, int(it.entry["json"][1])) for it in group}
            reads = [(lo, 0, hi - lo)]
        try:
            view = memoryview(buf)
            for off, at, n in reads:
                pread_into(fd, view[at : at + n], off)
        except (OSError, ValueError) as err:
            for it in group:
                self._damaged(shard, it, f"cannot read sample bytes ({err})", skipped)
            return
        for it in group:
            b0, bn = where[it.pos]
            j0, jn = jsons[it.pos]
            raw, js = buf[b0 : b0 + bn], buf[j0 : j0 + jn]
            try:
                if self.verify != "off":
                    check_checksum(raw, js, it.entry)
                meta = check_meta(js.tobytes(), bn, it.entry)
            except ValueError as err:
                self._damaged(shard, it, str(err), skipped)
                continue
            fill.put(it.pos, raw, meta)


class _Fill:
    """The batch under construction: rows written as samples arrive, in any order."""

    def __init__(self, reader: BatchReader, size: int):
        self.reader, self.size = reader, size
        self.out: torch.Tensor | None = None
        self.ragged: dict[int, torch.Tensor] = {}  # rows whose shape (or dtype) differs from the first
        self.metas: dict[int, dict[str, Any]] = {}

    def _row_dtype(self, meta: dict[str, Any]) -> torch.dtype:
        out = self.reader.output
        return _TORCH[meta["dtype"] if out == "stored" else out]

    def put(self, pos: int, raw: np.ndarray, meta: dict[str, Any]) -> None:
        """Write one checked sample (its stored bytes ``raw`` in the read buffer) into row ``pos``."""
        shape, dtype = tuple(int(n) for n in meta["shape"]), self._row_dtype(meta)
        if self.out is None:
            self.out = self.reader.pool.take((self.size, *shape), dtype)
        if tuple(self.out.shape[1:]) == shape and self.out.dtype == dtype:
            row = self.out[pos]
        else:
            row = self.ragged[pos] = torch.empty(shape, dtype=dtype)
        self.metas[pos] = meta
        src = _values(raw, meta["dtype"])
        flat = row.view(-1)
        if self.reader.output == "float32":
            flat.copy_(src)  # the widening: float16/bfloat16/int16 -> float32 in one pass
            cfg = self.reader.cfg
            scale_(row, float(meta.get("offset", 0.0)), float(meta.get("slope", 1.0)), float(meta.get("intercept", 0.0)), cfg)
        else:
            flat.copy_(src)
            if src.dtype != flat.dtype and not _exact(flat, src):
                raise UsageError(
                    f"sample {meta['key']} is stored as {meta['dtype']} with values "
                    f"{self.reader.output} cannot hold exactly; valid: output_dtype float32 or "
                    f"{meta['dtype'] if meta['dtype'] != 'int16' else 'stored'}"
                )

    def finish(self, items: list[_Item], skipped: dict[int, str]) -> dict[str, Any]:
        """The batch dict (rows of skipped samples dropped, plan order kept)."""
        reader = self.reader
        kept = [it for it in items if it.pos in self.metas]
        metas = [self.metas[it.pos] for it in kept]
        batch: dict[str, Any] = {
            "index": torch.tensor([it.index for it in kept], dtype=torch.int64),
            "key": [m["key"] for m in metas],
            "meta": [m.get("meta", {}) for m in metas],
            "skipped": [skipped[p] for p in sorted(skipped)],
        }
        if reader.label is not None:
            values = [m[reader.label] for m in batch["meta"]]
            kind = torch.int64 if all(isinstance(v, int) for v in values) else torch.float32
            batch["y"] = torch.tensor(values, dtype=kind)
        if not kept or self.out is None:
            batch["x"] = torch.zeros(0)
            return batch
        if self.ragged:
            return self._finish_ragged(batch, kept, metas)
        rows = self.out.view(self.out.shape)  # a view: the pool sees the caller's reference
        if len(kept) < self.size:  # damaged samples left holes: keep the rows that were filled
            rows = rows[torch.tensor([it.pos for it in kept])]
        if reader.output == "float32" and reader.cfg.resize is None:
            batch["x"] = reshape(rows, reader.cfg)
        elif reader.output == "float32":
            with torch.autocast("cpu", enabled=False):  # interpolate under autocast would not be float32
                batch["x"] = reshape(rows, reader.cfg)
        else:
            batch.update(raw=rows, **_vectors(metas))
        return batch

    def _finish_ragged(self, batch: dict[str, Any], kept: list[_Item], metas: list[dict[str, Any]]) -> dict[str, Any]:
        assert self.out is not None
        if self.reader.output != "float32":
            raise UsageError(
                "a 2-byte batch (output_dtype float16/bfloat16/stored, or on='device') needs one "
                "shape per batch (and one stored dtype for 'stored'); valid: output_dtype='float32'"
            )
        parts = [self.ragged.get(it.pos, self.out[it.pos]) for it in kept]
        with torch.autocast("cpu", enabled=False):
            parts = [reshape(p[None], self.reader.cfg) for p in parts]
        shapes = {tuple(p.shape) for p in parts}
        if len(shapes) > 1:
            raise UsageError(
                f"samples in one batch have shapes {sorted(shapes)}; set PreprocessConfig(resize=...)"
            )
        batch["x"] = torch.cat(parts)
        return batch


def _exact(converted: torch.Tensor, src: torch.Tensor) -> bool:
    """Whether converting ``src`` lost nothing (NaN stays NaN)."""
    back = converted.to(src.dtype)
    if torch.equal(back, src):
        return True
    if not src.is_floating_point():
        return False
    return bool(((back == src) | (back.isnan() & src.isnan())).all())


def _vectors(metas: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
    """Per-sample ``offset``/``slope``/``intercept`` vectors for the device stage."""
    defaults = {"offset": 0.0, "slope": 1.0, "intercept": 0.0}
    return {
        name: torch.tensor([float(m.get(name, d)) for m in metas], dtype=torch.float32)
        for name, d in defaults.items()
    }
