"""``verify-shards``: every shard's sha256 and every sample's integrity and decodability.

Checks run against the manifest: a shard that is missing, unlisted or whose sha256 differs is a
problem; inside a shard each sample's bytes are compared with the sha256 its index entry records
(so a flipped byte is pinned to a sample key when it lies in sample data), its JSON is parsed and
its ``.bin`` decoded. The tar structure is read once with ``tarfile`` to catch damaged headers.
"""

from __future__ import annotations

import hashlib
import json
import tarfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .format import INDEX_MEMBER, decode_array, file_sha256, load_manifest, read_member, shard_paths


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a shard directory."""

    shard: str
    """Shard file name."""
    key: str | None
    """Sample key, when the problem is pinned to one sample."""
    message: str
    """What is wrong."""

    def __str__(self) -> str:
        where = f"{self.shard} key {self.key}" if self.key else self.shard
        return f"{where}: {self.message}"


@dataclass
class VerifyReport:
    """Outcome of :func:`verify_shards`."""

    shards: int = 0
    """Shards checked."""
    samples: int = 0
    """Samples decoded successfully."""
    problems: list[Problem] = field(default_factory=list)
    """Everything found wrong (empty: all good)."""

    @property
    def ok(self) -> bool:
        """No problems."""
        return not self.problems


def _check_tar(path: Path, entries: list[dict[str, Any]]) -> str | None:
    """Why the tar structure disagrees with the index entries, or None."""
    try:
        with tarfile.open(path, mode="r:") as tf:
            members = tf.getmembers()
    except (tarfile.TarError, OSError) as err:
        return f"tar structure unreadable ({err})"
    names = [m.name for m in members]
    expected = [f"{e['key']}.{kind}" for e in entries for kind in ("bin", "json")] + [INDEX_MEMBER]
    if names != expected:
        return f"tar members {names[:4]}... differ from the manifest's sample list"
    spans = [[m.offset_data, m.size] for m in members[:-1]]
    if spans != [list(e[kind]) for e in entries for kind in ("bin", "json")]:
        return "member data offsets differ from the manifest"
    return None


def _check_sample(fh: Any, entry: dict[str, Any]) -> str | None:
    """Why one sample is bad, or None."""
    try:
        bin_bytes = read_member(fh, entry["bin"])
        json_bytes = read_member(fh, entry["json"])
    except (OSError, ValueError) as err:
        return f"cannot read sample bytes ({err})"
    if "sha256" in entry and hashlib.sha256(bin_bytes + json_bytes).hexdigest() != entry["sha256"]:
        return "sample bytes differ from the sha256 recorded in the manifest"
    try:
        meta = json.loads(json_bytes)
        if meta.get("key") != entry["key"]:
            return f"JSON names key {meta.get('key')!r}"
        values = decode_array(bin_bytes, meta)
    except (ValueError, KeyError, TypeError) as err:
        return f"not decodable ({err})"
    if values.size != int(np.prod(meta["shape"], dtype=np.int64)):
        return "decoded size differs from the JSON shape"
    return None


def verify_shards(directory: str | Path, on_shard: Callable[[str], None] | None = None) -> VerifyReport:
    """Check every shard of ``directory`` against its manifest; ``on_shard(name)`` after each shard."""
    directory = Path(directory)
    report = VerifyReport()
    try:
        manifest = load_manifest(directory)
    except (OSError, ValueError) as err:
        report.problems.append(Problem("manifest.json", None, f"unreadable ({err})"))
        return report
    listed = {s["name"] for s in manifest["shards"]}
    for path in shard_paths(directory):
        if path.name not in listed:
            report.problems.append(Problem(path.name, None, "shard not listed in the manifest"))
    for shard in manifest["shards"]:
        path = directory / shard["name"]
        report.shards += 1
        if not path.is_file():
            report.problems.append(Problem(shard["name"], None, "missing"))
            continue
        bad_before = len(report.problems)
        with open(path, "rb") as fh:
            for entry in shard["samples"]:
                why = _check_sample(fh, entry)
                if why:
                    report.problems.append(Problem(shard["name"], entry["key"], why))
                else:
                    report.samples += 1
        why = _check_tar(path, shard["samples"])
        if why:
            report.problems.append(Problem(shard["name"], None, why))
        if file_sha256(path) != shard["sha256"]:
            pinned = len(report.problems) > bad_before
            detail = "" if pinned else " (all samples intact: damage in tar headers, padding or index)"
            report.problems.append(Problem(shard["name"], None, f"sha256 differs from the manifest{detail}"))
        if on_shard is not None:
            on_shard(shard["name"])
    return report
