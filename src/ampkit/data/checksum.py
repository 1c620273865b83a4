"""Checksums of ``ampkit-shards/1``: XXH3 per sample, sha256 per whole shard.

Contract between the writer (``convert``/``shardwriter``) and the readers (loaders, ``verify-shards``):

* **Per sample**: every index entry (the shard's ``__index__`` member and the manifest's
  ``shards[i]["samples"]``) carries ``"xxh3": "<16 hex digits>"``, the 64-bit XXH3 (xxHash 0.8,
  seed 0: ``xxh3(b"") == "2d06800538d394c2"``) of the sample's ``.bin`` bytes followed by its
  ``.json`` bytes. It is a hex string, not a JSON number, so that no JSON reader rounds it.
  Shards written by earlier versions carry ``"crc32c": <int>`` (CRC-32C, Castagnoli, of the
  same bytes) or, earlier still, ``"sha256"`` (hex of sha256(bin + json)); readers accept any of
  the three, use the fastest one present (:data:`KINDS` order), and ``sample_check(entry)`` says
  which. XXH3 replaced CRC-32C because it runs at 50-80 GB/s against CRC-32C's 20-28 on the same
  core: on a 1.8 MB sample read by index, 0.02-0.03 ms against 0.06-0.09 (benchmarks/data_load.py).
* **Per shard**: the manifest's shard entries keep ``"sha256"`` (hex) of the whole shard file,
  for provenance. The writer computes it over every byte it writes (tar headers, padding, end
  blocks included) while writing, never by reading the file back.

Every function takes any contiguous buffer (``bytes``, ``bytearray``, ``memoryview``, a
C-contiguous numpy array, a slice of an ``mmap``) and copies nothing. XXH3 is the ``xxhash``
package; CRC-32C (for the older shards) the ``crc32c`` package, hardware-accelerated.
"""

from __future__ import annotations

import hashlib
from typing import Any

import crc32c as _crc32c
import xxhash as _xxhash

__all__ = ["KINDS", "crc32c", "crc_hex", "mismatch", "recorded", "sample_check", "sample_crc", "sample_xxh3"]

KINDS: tuple[str, ...] = ("xxh3", "crc32c", "sha256")
"""Per-sample checksum fields an index entry may carry, fastest first (new shards: ``xxh3``)."""


def crc32c(data: Any, value: int = 0) -> int:
    """CRC-32C of ``data`` (any contiguous buffer), continuing from ``value`` (0 to start)."""
    return int(_crc32c.crc32c(data, value))


def sample_crc(bin_bytes: Any, json_bytes: Any) -> int:
    """CRC-32C of ``bin_bytes`` followed by ``json_bytes`` (the checksum of shards written before XXH3)."""
    return int(_crc32c.crc32c(json_bytes, _crc32c.crc32c(bin_bytes)))


def sample_xxh3(bin_bytes: Any, json_bytes: Any) -> str:
    """The per-sample checksum of new shards: XXH3-64 of ``bin_bytes`` followed by ``json_bytes``, as 16 hex digits."""
    h = _xxhash.xxh3_64(bin_bytes)
    h.update(json_bytes)
    return h.hexdigest()


def crc_hex(value: int) -> str:
    """A CRC-32C as 8 hex digits (for messages)."""
    return f"{value:08x}"


def recorded(entry: dict[str, Any]) -> str | None:
    """The checksum an index entry records (first of :data:`KINDS` with a value), None when none.

    A field that is present but ``null`` records nothing: such an entry has no checksum of its own
    (readers then fall back to the shard's sha256), never a check that passes by being skipped.
    """
    for kind in KINDS:
        if entry.get(kind) is not None:
            return kind
    return None


def sample_check(entry: dict[str, Any]) -> str:
    """Which checksum an index entry carries: ``"xxh3"``, ``"crc32c"`` or ``"sha256"`` (first of :data:`KINDS`).

    Raises ``ValueError`` when it carries none (a malformed entry).
    """
    kind = recorded(entry)
    if kind is not None:
        return kind
    raise ValueError(f"sample {entry.get('key')}: index entry has none of {', '.join(KINDS)}")


def _digest(kind: str, bin_bytes: Any, json_bytes: Any) -> Any:
    if kind == "xxh3":
        return sample_xxh3(bin_bytes, json_bytes)
    if kind == "crc32c":
        return sample_crc(bin_bytes, json_bytes)
    h = hashlib.sha256(bin_bytes)
    h.update(json_bytes)
    return h.hexdigest()


def mismatch(bin_bytes: Any, json_bytes: Any, entry: dict[str, Any]) -> str | None:
    """Why the sample's bytes do not match the checksum its index entry records, or None.

    None also when the entry records no checksum at all (the caller decides what that means).
    """
    kind = recorded(entry)
    if kind is not None:
        want = entry[kind]
        got = _digest(kind, bin_bytes, json_bytes)
        if got == (want.lower() if kind == "xxh3" and isinstance(want, str) else want):
            return None
        if kind == "crc32c":
            got, want = crc_hex(got), crc_hex(int(want))
        elif kind == "sha256":
            got, want = got[:16] + "...", str(want)[:16] + "..."
        return f"checksum mismatch: {kind} {got} of the sample's bytes, the index records {want} (bytes changed since conversion)"
    return None
