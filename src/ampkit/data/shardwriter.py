"""Write one reproducible tar shard: fixed member metadata, recorded data offsets, atomic completion.

Members get mode 0o644, uid/gid 0, empty owner names and mtime 0 in USTAR format, so the same
samples give byte-identical shards. The shard is written as ``.shard-N.tar.tmp``, closed with its
index member, fsynced and renamed: a shard under its final name is always complete.
"""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
from pathlib import Path
from typing import Any

from ..fsutil import fsync_dir
from .format import INDEX_MEMBER, MEMBER_MODE, TAR_FORMAT, dumps, shard_name, tmp_name


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
        """Index entries written so far: key, bin/json ``[data offset, size]``, sha256 of bin+json."""
        self._fh = open(self.tmp, "wb")  # noqa: SIM115 (closed in close/abort)
        self._tar = tarfile.open(fileobj=self._fh, mode="w", format=TAR_FORMAT)  # noqa: SIM115

    def _member(self, name: str, data: bytes) -> list[int]:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        info.mode = MEMBER_MODE
        info.mtime = 0
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        info.type = tarfile.REGTYPE
        # the data follows this member's header blocks; tarfile does not report where on write
        header = info.tobuf(TAR_FORMAT, self._tar.encoding, self._tar.errors)
        start = self._tar.offset + len(header)
        self._tar.addfile(info, io.BytesIO(data))
        return [start, len(data)]

    def add(self, key: str, bin_bytes: bytes, json_bytes: bytes) -> None:
        """Append one sample: ``<key>.bin`` then ``<key>.json``."""
        entry = {
            "key": key,
            "bin": self._member(f"{key}.bin", bin_bytes),
            "json": self._member(f"{key}.json", json_bytes),
            "sha256": hashlib.sha256(bin_bytes + json_bytes).hexdigest(),
        }
        self.samples.append(entry)

    def close(self) -> Path:
        """Write the index member, fsync, rename to the final name; returns the final path."""
        index = {"shard": self.name, "samples": self.samples, "count": len(self.samples)}
        self._member(INDEX_MEMBER, dumps(index))
        self._tar.close()
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._fh.close()
        final = self.directory / self.name
        os.replace(self.tmp, final)
        fsync_dir(self.directory)
        return final

    def abort(self) -> None:
        """Drop the unfinished shard (also after a failed write or close: a full disk leaves no temporary)."""
        try:
            self._fh.close()  # flushing what is buffered may fail again (ENOSPC): the file goes anyway
        except OSError:
            pass
        self.tmp.unlink(missing_ok=True)
