"""The ``ampkit-shards/1`` on-disk format: names, sample layout, decoding, manifest.

Both sides of reduced-precision storage import this module: ``convert`` writes what it
describes and the loaders read it. Everything here is plain ``tarfile``/``json``/``numpy``
so shards stay readable without ampkit (``webdataset`` sees ``<key>.bin`` + ``<key>.json``
pairs and skips the per-shard index member, whose name matches its ``skip_meta`` regex).

Layout of ``DIR``::

    shard-000000.tar      <key>.bin, <key>.json per sample (in that order), then __index__
    .shard-000001.tar.tmp shard being written (renamed when complete, fsynced)
    manifest.json         shards, sha256, sample offsets, totals

Decoding: ``value = stored.astype(float32) + offset``; slope/intercept are metadata that the
reader applies afterwards (``hu = slope * value + intercept``), never folded into the bytes.
The stored dtypes and the decoders live in :mod:`ampkit.data.decode` and are re-exported here.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import tarfile
from pathlib import Path
from typing import IO, Any, Final

from ..fsutil import open_binary, write_atomic
from . import schema
from .decode import STORED_DTYPES as STORED_DTYPES
from .decode import bf16_bits_to_float32 as bf16_bits_to_float32
from .decode import decode_array as decode_array
from .decode import decode_tensor as decode_tensor
from .decode import stored_array as stored_array
from .decode import widen as widen
from .limits import manifest_limit, read_metadata
from .schema import SHARD_RE

FORMAT = "ampkit-shards/1"
"""Value of ``manifest.json["format"]``."""
MANIFEST_NAME = "manifest.json"
"""File name of the manifest inside a shard directory."""
INDEX_MEMBER = "__index__"
"""Name of each shard's last member, its own index (JSON). It must match webdataset's
``skip_meta`` regex ``__[^/]*__($|/)`` *as a whole name*: ``__index__.json`` would NOT be
skipped (the regex needs the name to end right after the closing ``__``)."""
KEY_DIGITS = 9
"""Sample keys are the global sample index, zero-padded to this many digits (no dots)."""
TMP_RE = re.compile(r"\.shard-(\d{6})\.tar\.tmp\Z")
"""Matches temporary (incomplete) shard file names."""
TAR_FORMAT: Final = tarfile.USTAR_FORMAT
"""Tar header format of every member (all names are short, so USTAR always suffices)."""
MEMBER_MODE = 0o644
"""Mode bits of every member; uid/gid 0, uname/gname empty and mtime 0 make shards reproducible."""


def sample_key(index: int) -> str:
    """The key of global sample ``index``: ``000000042``."""
    return f"{index:0{KEY_DIGITS}d}"


def shard_name(number: int) -> str:
    """File name of shard ``number``: ``shard-000003.tar``."""
    return f"shard-{number:06d}.tar"


def tmp_name(number: int) -> str:
    """File name of shard ``number`` while it is being written: ``.shard-000003.tar.tmp``."""
    return f".shard-{number:06d}.tar.tmp"


def dumps(obj: Any) -> bytes:
    """Canonical JSON bytes (UTF-8, sorted keys, compact): the same object gives the same bytes."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def open_shard(path: str | os.PathLike[str]) -> IO[bytes]:
    """A shard file opened for reading without ever blocking on a FIFO or reading a device.

    ``ValueError`` ("not a regular file ...", "is a folder") for anything but a regular file, so
    callers treat it like any other damaged shard; ``OSError`` (missing, unreadable) otherwise.
    """
    try:
        return open_binary(path)
    except OSError as err:
        if err.errno not in (errno.EINVAL, errno.EISDIR):
            raise
        raise ValueError(
            "a folder, not a shard file" if err.errno == errno.EISDIR else err.strerror
        ) from None


def read_index(shard: Path) -> dict[str, Any]:
    """The index member of one shard (found by name; tarfile seeks over member data), checked.

    Raises ``OSError`` when the file cannot be read and ``ValueError`` for anything else: not a
    regular file, not a tar, truncated, no index member, or an index whose entries are malformed
    or point past the end.
    """
    try:
        with open_shard(shard) as fh, tarfile.open(fileobj=fh, mode="r:") as tf:
            size = os.fstat(fh.fileno()).st_size
            member = tf.getmember(INDEX_MEMBER)
            if not member.isfile() or member.offset_data + member.size > size:
                raise ValueError(f"{INDEX_MEMBER} member ends past the end of the file ({size} bytes)")
            f = tf.extractfile(member)
            assert f is not None
            data = f.read()
    except KeyError:
        raise ValueError(f"no {INDEX_MEMBER} member (not a shard written by ampkit convert)") from None
    except tarfile.TarError as err:
        raise ValueError(f"not a readable tar ({err})") from None
    index = schema.index(schema.parse_json(data, INDEX_MEMBER), INDEX_MEMBER)
    schema.spans_within(index["samples"], size, Path(shard).name)
    return dict(index)


def read_member(fh: Any, span: list[int] | tuple[int, int]) -> bytes:
    """Bytes of one member's data from an open shard file, given its ``[offset, size]``.

    The span is checked against the file's size before reading, so a damaged or hostile index
    cannot make this allocate more than the file holds (``ValueError`` instead).
    """
    offset, length = schema.span(span, "span")
    try:
        size: int | None = os.fstat(fh.fileno()).st_size
    except (AttributeError, OSError, ValueError):  # not a real file (e.g. BytesIO): bounded by its content
        size = None
    if size is not None and offset + length > size:
        raise ValueError(
            f"span [{offset}, {length}] ends past the end of the file ({size} bytes; truncated?)"
        )
    fh.seek(offset)
    data = fh.read(length)
    if len(data) != length:
        raise ValueError(f"short read at byte {offset}: {len(data)} of {length} bytes")
    return bytes(data)


def read_sample(shard: Path, entry: dict[str, Any]) -> tuple[bytes, dict[str, Any]]:
    """``(bin_bytes, meta)`` of one index entry, by seek + read (no tar scan)."""
    with open_shard(shard) as fh:
        bin_bytes = read_member(fh, entry["bin"])
        meta = schema.parse_json(read_member(fh, entry["json"]), f"sample {entry['key']}")
    return bin_bytes, meta


def sample_metas(directory: str | Path, manifest: dict[str, Any]) -> list[dict[str, Any]]:
    """Every sample's JSON, in manifest order (seek + read per sample, no data read), checked.

    Each JSON passes ``schema.checked_sample`` (the fields a summary reads, its key, a shape whose
    size equals the sample's ``.bin`` span); ``ValueError`` names the shard and key.
    """
    metas: list[dict[str, Any]] = []
    for shard in manifest["shards"]:
        try:
            fh = open_shard(Path(directory) / shard["name"])
        except ValueError as err:
            raise ValueError(f"{shard['name']}: {err}") from None
        with fh:
            for e in shard["samples"]:
                where = f"{shard['name']} sample {e['key']}"
                try:
                    data = read_member(fh, e["json"])
                except ValueError as err:
                    raise ValueError(f"{where}: {err}") from None
                metas.append(schema.checked_sample(data, e, where))  # the check verify-shards makes too
    return metas


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open_shard(path) as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def shard_paths(directory: Path) -> list[Path]:
    """Complete shards in ``directory``, in shard order."""
    return sorted(p for p in Path(directory).iterdir() if SHARD_RE.match(p.name) and p.is_file())


def load_manifest(directory: str | Path) -> dict[str, Any]:
    """``DIR/manifest.json`` as a dict, its structure checked (``schema.manifest``).

    Raises ``FileNotFoundError`` when missing, ``IsADirectoryError`` for a folder, and ``ValueError``
    when it is no regular file (a FIFO or device is never read), larger than the shard files
    beside it can need (:func:`ampkit.data.limits.manifest_limit`), not JSON, of another format, or
    malformed (the message, ``manifest.json: ...``, names the field).
    """
    data = read_metadata(Path(directory) / MANIFEST_NAME, *manifest_limit(directory))
    manifest = schema.parse_json(data, MANIFEST_NAME)
    found = manifest.get("format") if isinstance(manifest, dict) else None
    if found != FORMAT:
        raise ValueError(f"{MANIFEST_NAME}: format {found!r}, expected {FORMAT!r}")
    try:
        return dict(schema.manifest(manifest))
    except ValueError as err:
        raise ValueError(f"{MANIFEST_NAME}: {err}") from None


def read_shard_entry(path: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """One complete shard's manifest entry (its sha256 read from disk) and its sample JSONs, checked.

    What ``convert`` records while writing a shard, recovered from the file alone (for shards
    kept from an interrupted run and for :func:`rebuild_manifest`). ``ValueError`` names the shard.
    """
    path = Path(path)
    try:
        index = read_index(path)
    except ValueError as err:
        raise ValueError(f"{path.name}: {err}") from None
    entry = {
        "name": path.name,
        "sha256": file_sha256(path),
        "bytes": path.stat().st_size,
        "count": int(index["count"]),
        "samples": index["samples"],
    }
    return entry, sample_metas(path.parent, {"shards": [entry]})


def rebuild_manifest(directory: str | Path, write: bool = True) -> dict[str, Any]:
    """Rebuild the manifest from the shards' index members and sample JSONs (and write it)."""
    from .summary import build_manifest  # totals live with the other accounting code

    shards: list[dict[str, Any]] = []
    metas: list[dict[str, Any]] = []
    for path in shard_paths(Path(directory)):
        entry, found = read_shard_entry(path)
        shards.append(entry)
        metas.extend(found)
    manifest = build_manifest(shards, metas)
    if write:
        write_manifest(Path(directory), manifest)
    return manifest


def write_manifest(directory: Path, manifest: dict[str, Any]) -> None:
    """Write ``manifest.json`` atomically (``fsutil.write_atomic``: temporary file, fsync, rename)."""
    write_atomic(Path(directory) / MANIFEST_NAME, json.dumps(manifest, sort_keys=True, indent=1) + "\n")
