"""Open shard files of one process: descriptors for ``pread``, and optionally the files mapped into memory.

Readers keep shard files open (``pread`` needs no seek, so forked DataLoader workers can share
inherited descriptors); the least recently used beyond ``max_open`` are closed. With
``map_bytes`` > 0 a shard is also mapped into memory on its first read: a sample read by index is
then checked and widened where the page cache holds it, with no copy into a read buffer (on a
1.8 MB float16 sample, benchmarks/data_load.py: ~0.13 ms to check and widen against ~0.17 after a
``pread``). Mappings are private (copy-on-write: a stray write never reaches the file) and only
read; at most ``map_bytes`` of files are mapped at once (least recently used unmapped beyond
that). Mapped pages are the page cache's, shared by every process reading them, and count in a
process's RSS once touched. A file that cannot be mapped (empty, or a file system without
``mmap``) is read with ``pread``.

Reading a page of a mapped file that has since shrunk raises SIGBUS, which no Python code can
catch. :meth:`ShardFiles.get` therefore compares a mapped file's size with the size it mapped on
every use (one ``fstat`` per shard and batch) and reopens a file that changed, so a shard cut
short *between* reads has the samples it lost named, like any truncated shard. A shard truncated
in place *while* a sample is being read from it (``cp new.tar shard-000003.tar`` during
training: ``cp`` truncates the file it overwrites) still kills the reading process with SIGBUS.
``ampkit convert`` never does that (it writes a temporary file and renames it, and a mapped file
that is replaced keeps its old contents for the reader); for shards that other tools may rewrite
in place, pass ``map_bytes=0`` (``pread``: such a read is a named damaged sample instead).
"""

from __future__ import annotations

import mmap
import os
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..fsutil import open_regular

MAP_BYTES = 4 << 30
"""Default of ``IndexedShards(map_bytes=...)``: bytes of shard files one process maps at most."""


class _Open:
    __slots__ = ("fd", "size", "unmappable", "view")

    def __init__(self, fd: int, size: int):
        self.fd, self.size = fd, size
        self.view: np.ndarray | None = None  # uint8 over the file's private mapping
        self.unmappable = False


class ShardFiles:
    """Open shard files of this process (least recently used closed beyond ``max_open``)."""

    def __init__(self, max_open: int = 64, map_bytes: int = 0):
        self.max_open = max_open
        """Files kept open at most."""
        self.map_bytes = map_bytes
        """Bytes of files kept mapped at most; 0: none (every read is a ``pread``)."""
        self._open: OrderedDict[int, _Open] = OrderedDict()
        self._mapped = 0

    def get(self, shard: int, path: Callable[[int], Path]) -> tuple[int, int]:
        """``(file descriptor, size in bytes)`` of ``shard``, opened on first use (OSError if it cannot be)."""
        got = self._open.get(shard)
        if got is not None and got.view is not None and os.fstat(got.fd).st_size != got.size:
            self._drop(shard)  # changed since it was mapped: reopen, so that the new size is checked
            got = None
        if got is not None:
            if len(self._open) > 1:
                self._open.move_to_end(shard)
            return got.fd, got.size
        fd, info = open_regular(path(shard))  # a FIFO in a shard's place must not hang the open
        got = self._open[shard] = _Open(fd, info.st_size)
        while len(self._open) > self.max_open:
            self._drop(next(iter(self._open)))
        return got.fd, got.size

    def view(self, shard: int) -> np.ndarray | None:
        """The bytes of ``shard`` (opened by :meth:`get`) as a uint8 array over its mapping; None: use ``pread``."""
        got = self._open[shard]
        if got.view is not None or got.unmappable or not 0 < got.size <= self.map_bytes:
            return got.view
        for other in [s for s, o in self._open.items() if o.view is not None]:  # least recently used first
            if self._mapped + got.size <= self.map_bytes:
                break
            self._unmap(self._open[other])
        try:
            got.view = np.frombuffer(mmap.mmap(got.fd, got.size, access=mmap.ACCESS_COPY), np.uint8)
        except (OSError, ValueError, OverflowError):
            got.unmappable = True
            return None
        self._mapped += got.size
        return got.view

    def _unmap(self, got: _Open) -> None:
        # the mapping goes when the last array viewing it does (batches copy out of it)
        if got.view is not None:
            got.view = None
            self._mapped -= got.size

    def _drop(self, shard: int) -> None:
        got = self._open.pop(shard)
        self._unmap(got)
        try:
            os.close(got.fd)
        except OSError:
            pass

    def close(self) -> None:
        """Close every file (and drop every mapping)."""
        while self._open:
            self._drop(next(iter(self._open)))

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # interpreter shutdown: nothing left to report to
            pass
