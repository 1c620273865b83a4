"""``verify-shards``: every shard's sha256 and every sample's integrity and decodability.

Checks run against the manifest: a shard that is missing, unlisted, of another size or whose
whole-file sha256 (recorded at conversion, for provenance) differs is a problem; inside a shard
each sample's bytes are compared with the checksum its index entry records (XXH3; CRC-32C or
sha256 in shards written by earlier versions), so a flipped byte is pinned to a sample key when
it lies in sample data; its JSON is parsed and its ``.bin`` decoded. The tar structure is read once with ``tarfile`` to
catch damaged headers. Without a usable manifest (missing, not JSON, malformed) that is itself a
problem, and each shard is checked against its own ``__index__`` member instead.

Nothing is read or allocated on the word of a file: every span is checked against the size of
the file it points into first (:func:`ampkit.data.format.read_member`).
"""

from __future__ import annotations

import hashlib
import os
import tarfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .checksum import mismatch, recorded
from .folder import ShardFolder, open_folder
from .format import INDEX_MEMBER, decode_array, open_shard, read_index, read_member
from .schema import checked_sample


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a shard directory."""

    shard: str
    """Shard file name (or ``manifest.json``)."""
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
    failed: int = 0
    """Samples that failed (a missing shard's samples included, when the manifest lists them)."""
    problems: list[Problem] = field(default_factory=list)
    """Everything found wrong (empty: all good)."""

    @property
    def ok(self) -> bool:
        """No problems."""
        return not self.problems

    def summary(self, directory: str | Path) -> str:
        """One line: ``2 of 10 samples failed; 3 problems in DIR (8 samples decoded fine)``, or the all-good line."""
        if self.ok:
            return f"ok: {self.shards} shards, {self.samples} samples in {directory} match the manifest and decode"
        n = len(self.problems)
        return (
            f"{self.failed} of {self.samples + self.failed} samples failed; {n} problem{'s' if n > 1 else ''} "
            f"in {directory} ({self.samples} samples decoded fine)"
        )


def _check_tar(fh: Any, entries: list[dict[str, Any]]) -> str | None:
    """Why the tar structure of the open shard ``fh`` disagrees with the index entries, or None."""
    try:
        fh.seek(0)
        with tarfile.open(fileobj=fh, mode="r:") as tf:
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


def _sha256(fh: Any) -> str:
    """Hex sha256 of the whole open file, read in 1 MiB blocks."""
    fh.seek(0)
    h = hashlib.sha256()
    for block in iter(lambda: fh.read(1 << 20), b""):
        h.update(block)
    return h.hexdigest()


def _check_sample(fh: Any, entry: dict[str, Any]) -> str | None:
    """Why one sample is bad, or None."""
    try:
        bin_bytes = read_member(fh, entry["bin"])
        json_bytes = read_member(fh, entry["json"])
    except (OSError, ValueError) as err:
        return f"cannot read sample bytes ({err})"
    if mismatch(bin_bytes, json_bytes, entry) is not None:
        return f"sample bytes differ from the {recorded(entry)} recorded in the manifest"
    try:  # the same metadata check as inspect's (schema.checked_sample), so the two agree
        meta = checked_sample(json_bytes, entry, "sample JSON")
    except (ValueError, KeyError, TypeError) as err:
        return f"damaged metadata ({err})"
    try:
        with np.errstate(over="raise"):  # a finite stored value + offset beyond float32: Inf
            decode_array(bin_bytes, meta)
    except FloatingPointError:
        return f"decodes to Inf: stored values + offset {meta.get('offset', 0.0):g} exceed the float32 range"
    except (ValueError, KeyError, TypeError) as err:
        return f"not decodable ({err})"
    return None


def _check_shard(
    path: Path, entries: list[dict[str, Any]], listed: dict[str, Any] | None, report: VerifyReport
) -> None:
    """Check one shard's samples, tar structure and (with a manifest entry ``listed``) size and sha256."""
    name = path.name
    try:  # never blocks: a FIFO in a shard's place is a finding, not a hang
        fh = open_shard(path)
    except (FileNotFoundError, ValueError):  # other OSErrors (EACCES, EIO): a fault of the machine
        odd = "not a regular file (a folder, FIFO, device or broken link)"
        report.problems.append(Problem(name, None, odd if os.path.lexists(path) else "missing"))
        report.failed += len(entries)
        return
    with fh:
        size = os.fstat(fh.fileno()).st_size
        if listed is not None and size != listed["bytes"]:
            report.problems.append(Problem(name, None, f"{size} bytes, the manifest says {listed['bytes']}"))
        bad_before = len(report.problems)
        for entry in entries:
            bad = _check_sample(fh, entry)
            if bad:
                report.problems.append(Problem(name, entry["key"], bad))
                report.failed += 1
            else:
                report.samples += 1
        tar_bad = _check_tar(fh, entries)
        digest = _sha256(fh) if listed is not None else None
    if tar_bad:
        report.problems.append(Problem(name, None, tar_bad))
    if listed is not None and digest != listed["sha256"]:
        for entry in entries:  # the file changed and nothing of their own clears these samples
            if recorded(entry) is None:
                why = "no checksum of its own, and the shard's sha256 differs: cannot be cleared"
                report.problems.append(Problem(name, entry["key"], why))
                report.failed += 1
                report.samples -= 1
        pinned = len(report.problems) > bad_before
        detail = "" if pinned else " (all samples intact: damage in tar headers, padding or index)"
        report.problems.append(Problem(name, None, f"sha256 differs from the manifest{detail}"))


def verify_shards(
    directory: str | Path | ShardFolder, on_shard: Callable[[str], None] | None = None
) -> VerifyReport:
    """Check every shard of ``directory`` against its manifest; ``on_shard(name)`` after each shard.

    A :class:`~ampkit.errors.UsageError` when ``directory`` is no shard folder at all (see
    :func:`ampkit.data.folder.open_folder`); everything wrong inside one is a :class:`Problem`.
    """
    folder = directory if isinstance(directory, ShardFolder) else open_folder(directory)
    report = VerifyReport()
    for tmp in folder.unfinished:
        report.problems.append(Problem(tmp.name, None, "unfinished shard of an interrupted convert"))
    if folder.manifest is None:
        report.problems.append(
            Problem(
                "manifest.json",
                None,
                f"{folder.manifest_problem}; each shard was checked against its own index "
                "(rerunning the same ampkit convert command rebuilds the manifest)",
            )
        )
        for path in folder.shard_files:
            report.shards += 1
            try:
                entries = read_index(path)["samples"]
            except (OSError, ValueError) as err:
                report.problems.append(Problem(path.name, None, f"index unreadable ({err})"))
            else:
                _check_shard(path, entries, None, report)
            if on_shard is not None:
                on_shard(path.name)
        return report
    listed = {s["name"] for s in folder.manifest["shards"]}
    for path in folder.shard_files:
        if path.name not in listed:
            report.problems.append(Problem(path.name, None, "shard not listed in the manifest"))
    for shard in folder.manifest["shards"]:
        report.shards += 1
        _check_shard(folder.directory / shard["name"], shard["samples"], shard, report)
        if on_shard is not None:
            on_shard(shard["name"])
    return report
