"""What both loaders share: the manifest view, per-sample checks and damage reports.

Integrity model. Every sample's index entry records a checksum of its ``.bin`` + ``.json``
bytes: XXH3 in shards written by this version (``ampkit.data.checksum``), CRC-32C or sha256 in
older ones. The loaders check it on every read by default (``verify="sample"``), at the cost of a
checksum (XXH3 runs at 50-80 GB/s, far above the loaders' speed), so a flipped byte is caught
in the very sample it damaged and named by shard and key, whatever worker reads it.
``verify="shard"`` adds the whole-file sha256 of the manifest (provenance; hashing a whole
shard is ~10x the cost of reading it) the first time a process opens a shard; ``"off"`` trusts
the files (sizes and JSON are still checked). ``on_error="raise"`` raises :class:`ShardError`
naming the shard and the damaged key; ``on_error="skip"`` leaves the sample out, lists it in
the batch's ``"skipped"`` and logs one warning per damaged shard.
"""

from __future__ import annotations

import bisect
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ..errors import UsageError
from . import schema
from .checksum import mismatch, recorded
from .format import STORED_DTYPES, load_manifest, open_shard, read_member

log = logging.getLogger("ampkit.data")

OnError = Literal["raise", "skip"]
"""``raise``: stop at the first damaged sample; ``skip``: leave it out and count it."""

Verify = Literal["sample", "shard", "off"]
"""``sample``: each sample's checksum on every read (default); ``shard``: that plus the whole
file's sha256 the first time a process opens the shard; ``off``: no checksums."""

VERIFY_MODES: tuple[str, ...] = ("sample", "shard", "off")


class ShardError(RuntimeError):
    """A damaged or unreadable sample; ``shard`` and ``key`` say which.

    Also constructible from a message alone: that is how a DataLoader re-raises a worker's
    exception in the main process, and ``shard``/``key`` are then read back from the message.
    """

    def __init__(self, shard: str, key: str | None = None, reason: str | None = None):
        self.shard: str = shard
        """File name of the shard."""
        self.key: str | None = key
        """Key of the damaged sample (None: not localised)."""
        self.reason: str = reason or ""
        """What is wrong."""
        if reason is None:  # re-raised from a DataLoader worker: only the message survives
            found = _WHERE.findall(shard)
            self.shard, self.key = (found[-1][0], found[-1][1] or None) if found else ("", None)
            super().__init__(shard)
            return
        where = f"{shard}, sample {key}" if key else shard
        super().__init__(f"{where}: {reason}")


_WHERE = re.compile(r"ShardError: (\S+?)(?:, sample (\w+))?: ")


def check_options(on_error: str, verify: str) -> None:
    """Refuse unknown ``on_error``/``verify`` values (a :class:`UsageError` naming the valid ones)."""
    if on_error not in ("raise", "skip"):
        raise UsageError(f"on_error={on_error!r}; valid: raise, skip")
    if verify not in VERIFY_MODES:
        raise UsageError(f"verify={verify!r}; valid: {', '.join(VERIFY_MODES)}")


@dataclass
class ShardSet:
    """The manifest of a shard directory, indexed for lookups by global sample index."""

    directory: Path
    """The shard directory."""
    shards: list[dict[str, Any]]
    """Manifest shard entries: name, sha256, bytes, count, samples."""
    starts: np.ndarray = field(init=False)
    """Global index of each shard's first sample."""

    total: int = field(init=False)
    """Number of samples."""

    def __post_init__(self) -> None:
        self.starts = np.concatenate([[0], np.cumsum(self.counts)[:-1]]).astype(np.int64)
        self._starts: list[int] = self.starts.tolist()
        self.total = int(sum(self.counts))

    @classmethod
    def open(cls, directory: str | Path) -> ShardSet:
        """Read ``DIR/manifest.json`` (a :class:`UsageError` when it is missing or foreign)."""
        try:
            manifest = load_manifest(directory)
        except (OSError, ValueError) as err:
            raise UsageError(
                f"{directory}: not a shard directory ({err}); create one with ampkit convert"
            ) from None
        return cls(Path(directory), list(manifest["shards"]))

    @property
    def counts(self) -> list[int]:
        """Samples per shard."""
        return [int(s["count"]) for s in self.shards]

    def __len__(self) -> int:
        return self.total

    def shard_of(self, index: int) -> int:
        """Number of the shard holding global sample ``index``."""
        if not 0 <= index < self.total:
            raise IndexError(f"sample {index} out of range 0..{self.total - 1}")
        return bisect.bisect_right(self._starts, index) - 1

    def locate(self, index: int) -> tuple[int, dict[str, Any]]:
        """``(shard number, index entry)`` of global sample ``index``."""
        s = self.shard_of(index)
        return s, self.shards[s]["samples"][index - self._starts[s]]

    def path(self, shard: int) -> Path:
        """File of shard number ``shard``."""
        return self.directory / self.shards[shard]["name"]


def has_checksum(entry: dict[str, Any]) -> bool:
    """Whether an index entry records a per-sample checksum (XXH3; CRC-32C or sha256 in older shards)."""
    return recorded(entry) is not None


def check_checksum(bin_bytes: Any, json_bytes: Any, entry: dict[str, Any]) -> None:
    """Compare the sample's bytes with the checksum of its index entry; ValueError when they differ.

    ``bin_bytes``/``json_bytes`` are any contiguous buffers (checked without copying), against
    the fastest checksum the entry records (:func:`ampkit.data.checksum.mismatch`); nothing when none.
    """
    why = mismatch(bin_bytes, json_bytes, entry)
    if why is not None:
        raise ValueError(why)


def check_meta(json_bytes: bytes, nbytes: int, entry: dict[str, Any]) -> dict[str, Any]:
    """The sample's parsed JSON, checked: fields, key, stored dtype, data size; ValueError says what is wrong."""
    meta = schema.sample_meta(schema.parse_json(json_bytes, "metadata"), "metadata")
    if meta["key"] != entry["key"]:
        raise ValueError(f"metadata key {meta['key']!r} != index key")
    dtype = STORED_DTYPES.get(meta["dtype"])
    if dtype is None:
        raise ValueError(f"unknown stored dtype {meta.get('dtype')!r}")
    expect = schema.nbytes(meta["shape"], dtype.itemsize)
    if nbytes != expect:
        raise ValueError(f"{nbytes} data bytes, shape {meta['shape']} needs {expect}")
    return dict(meta)


def check_sample(bin_bytes: bytes, json_bytes: bytes, entry: dict[str, Any]) -> dict[str, Any]:
    """Checksum, then :func:`check_meta`: the sample's metadata, or ValueError saying what is wrong."""
    check_checksum(bin_bytes, json_bytes, entry)
    return check_meta(json_bytes, len(bin_bytes), entry)


def scan_shard(path: Path, entries: list[dict[str, Any]]) -> dict[str, str]:
    """Damaged samples of one shard, ``{key: reason}``, by reading each entry at its offsets."""
    damaged: dict[str, str] = {}
    try:
        fh = open_shard(path)  # never blocks on a FIFO in the shard's place
    except (OSError, ValueError) as err:
        return {e["key"]: f"cannot open shard ({err})" for e in entries}
    with fh:
        for e in entries:
            try:
                check_sample(read_member(fh, e["bin"]), read_member(fh, e["json"]), e)
            except (ValueError, OSError) as err:
                damaged[e["key"]] = str(err)
    return damaged


def shard_damage(shard: str, damaged: dict[str, str], on_error: OnError) -> None:
    """Report a shard whose whole-file sha256 failed: raise naming the key(s), or warn once and go on."""
    if damaged:
        keys = sorted(damaged)
        more = f" (+{len(keys) - 1} more)" if len(keys) > 1 else ""
        reason = f"shard sha256 mismatch; {damaged[keys[0]]}{more}"
        if on_error == "raise":
            raise ShardError(shard, keys[0], reason)
        log.warning("%s: sha256 mismatch; skipping damaged samples %s", shard, ", ".join(keys))
    else:
        # headers/padding changed, every sample's own check passed: the data is usable
        log.warning("%s: sha256 mismatch outside sample data; samples pass their own checks", shard)
