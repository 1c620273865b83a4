"""Write one reproducible tar shard: fixed member metadata, recorded data offsets, checksums, atomic completion.

Members get mode 0o644, uid/gid 0, empty owner names and mtime 0 in USTAR format, so the same
samples give byte-identical shards (the bytes ``tarfile`` would write: 512-byte headers, data
padded to 512 bytes, two zero blocks and zero padding to a 10 KiB record at the end). The writer
owns every byte: it hashes the whole shard with sha256 while writing (never by reading it back)
and records each sample's XXH3 (:mod:`ampkit.data.checksum`). The shard is written as
``.shard-N.tar.tmp``, closed with its index member, fsynced once and renamed: a shard under its
final name is always complete.
"""

from __future__ import annotations

import hashlib
import os
import tarfile
from pathlib import Path
from typing import Any

from ..fsutil import fsync_dir
from .checksum import sample_xxh3
from .format import INDEX_MEMBER, MEMBER_MODE, TAR_FORMAT, dumps, shard_name, tmp_name

_BLOCK = tarfile.BLOCKSIZE
_RECORD = tarfile.RECORDSIZE
_ZEROS = bytes(_RECORD)


def _bytes(data: Any) -> memoryview:
    """A flat byte view of ``data`` (bytes, bytearray, memoryview or a C-contiguous array), no copy."""
    return memoryview(data).cast("B")


class _TarStream:
    """The shard's byte stream: every byte goes to ``fileobj`` and into the shard's sha256."""

    def __init__(self, fileobj: Any):
        self.fileobj = fileobj
        """Where the bytes go (the temporary shard file)."""
        self.offset = 0
        """Bytes written so far."""
        self.hash = hashlib.sha256()
        """sha256 of those bytes."""

    def write(self, data: Any) -> None:
        view = _bytes(data)
        self.hash.update(view)
        self.fileobj.write(view)
        self.offset += view.nbytes


class ShardWriter:
    """Writes samples into ``DIR/.shard-N.tar.tmp`` and renames it to ``shard-N.tar`` on ``close``."""

    def __init__(self, directory: Path, number: int):
        self.directory = Path(directory)
        """Output folder."""
        self.name = shard_name(number)
        """Final file name."""
        self.tmp = self.directory / tmp_name(number)
        """Path while writing."""
        self.samples: list[dict[str, Any]] = []
        """Index entries written so far: key, bin/json ``[data offset, size]``, xxh3 of bin+json."""
        self.sha256: str | None = None
        """Hex sha256 of the whole shard file (set by ``close``)."""
        self.size: int | None = None
        """Bytes of the whole shard file (set by ``close``)."""
        self._fh = open(self.tmp, "wb")  # noqa: SIM115 (closed in close/abort)
        self._tar = _TarStream(self._fh)

    def _member(self, name: str, data: memoryview) -> list[int]:
        info = tarfile.TarInfo(name)
        info.size = data.nbytes
        info.mode = MEMBER_MODE
        info.mtime = 0
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        info.type = tarfile.REGTYPE
        self._tar.write(info.tobuf(TAR_FORMAT, tarfile.ENCODING, "surrogateescape"))
        start = self._tar.offset
        self._tar.write(data)
        self._tar.write(_ZEROS[: -data.nbytes % _BLOCK])
        return [start, data.nbytes]

    def add(self, key: str, bin_bytes: Any, json_bytes: Any) -> None:
        """Append one sample: ``<key>.bin`` then ``<key>.json`` (any byte buffers; arrays are not copied)."""
        bin_view, json_view = _bytes(bin_bytes), _bytes(json_bytes)
        entry = {
            "key": key,
            "bin": self._member(f"{key}.bin", bin_view),
            "json": self._member(f"{key}.json", json_view),
            "xxh3": sample_xxh3(bin_view, json_view),
        }
        self.samples.append(entry)

    def close(self) -> Path:
        """Write the index member and the tar end, fsync, rename to the final name; returns the final path."""
        index = {"shard": self.name, "samples": self.samples, "count": len(self.samples)}
        self._member(INDEX_MEMBER, _bytes(dumps(index)))
        self._tar.write(_ZEROS[: 2 * _BLOCK])
        self._tar.write(_ZEROS[: -self._tar.offset % _RECORD])
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._fh.close()
        final = self.directory / self.name
        os.replace(self.tmp, final)
        fsync_dir(self.directory)
        self.sha256, self.size = self._tar.hash.hexdigest(), self._tar.offset
        return final

    def entry(self) -> dict[str, Any]:
        """The manifest's entry for this shard (after ``close``): name, sha256, bytes, count, samples."""
        if self.sha256 is None:
            raise RuntimeError(f"{self.name} is not closed yet")
        return {
            "name": self.name,
            "sha256": self.sha256,
            "bytes": self.size,
            "count": len(self.samples),
            "samples": self.samples,
        }

    def abort(self) -> None:
        """Drop the unfinished shard (also after a failed write or close: a full disk leaves no temporary)."""
        try:
            self._fh.close()  # flushing what is buffered may fail again (ENOSPC): the file goes anyway
        except OSError:
            pass
        self.tmp.unlink(missing_ok=True)
