"""How many bytes of JSON metadata ampkit reads from a shard folder or ``--out``: caps sized to the data.

Metadata files are read whole, so each is opened through :func:`ampkit.fsutil.read_limited`: a
FIFO or device in its place is refused (never read, never waited on) and a file larger than its
cap is refused from its size before a byte is read. Each cap is what a genuine file can need:

* ``manifest.json`` lists every sample (~170 bytes each as ``convert`` writes it: two spans, a
  key and a checksum) and every shard. A sample takes at least 2 KiB of its shard (a tar header
  and a 512-byte block for each of its ``.bin`` and ``.json``), so the manifest of the shard
  files beside it needs at most :data:`MANIFEST_BYTES_PER_SAMPLE` per 2 KiB of them, plus
  :data:`MANIFEST_BASE_BYTES`; at most :data:`MANIFEST_MAX_SAMPLES` samples are provided for
  (a 10-million-sample manifest is ~1.7 GB; the cap tops out at 2.56 GB + 1 MiB).
* ``.convert.json`` holds the settings and one 16-hex-digit source stamp per shard of the plan.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from ..fsutil import FileTooLarge, read_limited
from .schema import SHARD_RE

MANIFEST_BASE_BYTES = 1 << 20
"""Manifest bytes allowed beyond its samples: totals, and the entries of a folder whose shards are gone."""
MANIFEST_BYTES_PER_SAMPLE = 256
"""Manifest bytes allowed per sample (one sample's entry plus its share of its shard's)."""
MIN_SAMPLE_BYTES = 2048
"""Fewest shard bytes one sample takes: a 512-byte tar header and a 512-byte block, twice."""
MANIFEST_MAX_SAMPLES = 10_000_000
"""Samples the manifest cap provides for at most."""
SETTINGS_BASE_BYTES = 64 << 10
"""``.convert.json`` bytes allowed beyond its source stamps (the settings are a few hundred)."""
SETTINGS_BYTES_PER_SHARD = 32
"""``.convert.json`` bytes allowed per shard of the plan (its source stamp takes 19)."""


def shard_bytes(directory: str | os.PathLike[str]) -> int:
    """Total size of the ``shard-NNNNNN.tar`` regular files in ``directory`` (0 when unreadable)."""
    total = 0
    try:
        with os.scandir(directory) as entries:
            for entry in entries:
                if SHARD_RE.match(entry.name):
                    try:
                        if entry.is_file():
                            total += entry.stat().st_size
                    except OSError:
                        pass
    except OSError:
        return 0
    return total


def manifest_limit(directory: str | os.PathLike[str]) -> tuple[int, str]:
    """``(cap in bytes, why)``: the largest ``manifest.json`` the shard files in ``directory`` can need."""
    samples = min(shard_bytes(Path(directory)) // MIN_SAMPLE_BYTES, MANIFEST_MAX_SAMPLES)
    limit = MANIFEST_BASE_BYTES + samples * MANIFEST_BYTES_PER_SAMPLE
    why = (
        f"the {limit:,} bytes a manifest can need for the at most {samples:,} samples the shard files "
        f"beside it hold ({MANIFEST_BASE_BYTES >> 20} MiB + {MANIFEST_BYTES_PER_SAMPLE} bytes per sample, "
        f"{MANIFEST_MAX_SAMPLES:,} samples at most)"
    )
    return limit, why


def settings_limit(shards: int) -> int:
    """The largest ``.convert.json`` a conversion of ``shards`` shards can need."""
    return SETTINGS_BASE_BYTES + SETTINGS_BYTES_PER_SHARD * shards


def read_metadata(path: Path, limit: int, why: str) -> bytes:
    """The bytes of the metadata file ``path``, at most ``limit``; ``ValueError`` naming the file for
    one that is no regular file (never read) or larger (``more than <why>``). ``OSError`` for the
    caller's own cases: missing, a folder, unreadable."""
    try:
        return read_limited(path, limit)
    except FileTooLarge as err:
        raise ValueError(f"{path.name}: {err.size:,} bytes, more than {why}") from None
    except OSError as err:
        if err.errno != errno.EINVAL:
            raise
        raise ValueError(f"{path.name}: {err.strerror}") from None
