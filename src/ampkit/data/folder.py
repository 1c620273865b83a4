"""Opening a shard folder named on the command line: is it one, and what it holds, without trusting it.

Shared by ``inspect`` and ``verify-shards``. A folder counts as a shard folder when it holds a
valid ``manifest.json`` (format ``ampkit-shards/1``) or at least one ``shard-NNNNNN.tar``;
anything else (a missing path, a file, an empty or unrelated folder, a broken manifest with no
shards beside it, a manifest listing no shards) is a :class:`UsageError`: there is nothing to
read. What is wrong *inside* a shard folder is left to the caller: ``verify-shards`` reports it,
``inspect`` refuses to summarise it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import UsageError
from .format import MANIFEST_NAME, TMP_RE, load_manifest, rebuild_manifest, sample_metas, shard_paths

VALID = "valid: a folder written by ampkit convert"


@dataclass
class ShardFolder:
    """What :func:`open_folder` found."""

    directory: Path
    """The folder."""
    manifest: dict[str, Any] | None
    """The manifest, structure checked; None when it is missing or invalid."""
    manifest_problem: str | None
    """Why ``manifest`` is None: ``"missing"``, ``"a folder"``, ``"not valid JSON (...)"``, ``"shards is ..."``."""
    shard_files: list[Path]
    """``shard-NNNNNN.tar`` files present, in order."""
    unfinished: list[Path]
    """``.shard-NNNNNN.tar.tmp`` files an interrupted ``convert`` left."""


def open_folder(directory: str | Path) -> ShardFolder:
    """The folder's manifest and shard files; a :class:`UsageError` when it is no shard folder at all."""
    d = Path(directory)
    if not d.exists():
        raise UsageError(f"{d}: no such folder; {VALID}")
    if not d.is_dir():
        raise UsageError(f"{d}: a file, not a folder; {VALID}")
    files = shard_paths(d)
    unfinished = sorted(p for p in d.iterdir() if TMP_RE.match(p.name))
    manifest: dict[str, Any] | None = None
    try:
        manifest, problem = load_manifest(d), None
    except FileNotFoundError:
        problem = "missing"
    except IsADirectoryError:
        problem = "a folder, not a file"
    except ValueError as err:
        problem = str(err).removeprefix(f"{MANIFEST_NAME}: ")
    if manifest is None and not files:
        if problem == "missing":
            raise UsageError(f"no shards in {d} (no {MANIFEST_NAME}, no shard-NNNNNN.tar files); {VALID}")
        raise UsageError(
            f"{d}: not a shard folder ({MANIFEST_NAME}: {problem}; no shard-NNNNNN.tar files); {VALID}"
        )
    if manifest is not None and not manifest["shards"] and not files:
        raise UsageError(f"no shards in {d} (its {MANIFEST_NAME} lists none); {VALID}")
    return ShardFolder(d, manifest, problem, files, unfinished)


def read_for_summary(folder: ShardFolder) -> tuple[dict[str, Any], list[dict[str, Any]], str]:
    """``(manifest, sample JSONs, note)`` for a summary; a :class:`UsageError` for anything unreadable.

    Without a manifest the shards' index members stand in (``note`` says so); a broken manifest
    or shard is refused with a pointer to ``verify-shards``, which says exactly what is wrong.
    """
    d = folder.directory
    check = f"check the folder with ampkit verify-shards {d}"
    note = ""
    manifest = folder.manifest
    try:
        if manifest is None:
            if folder.manifest_problem != "missing":
                raise UsageError(f"{d / MANIFEST_NAME}: {folder.manifest_problem}; {check}")
            manifest = rebuild_manifest(d, write=False)
            note = f"(no {MANIFEST_NAME}: rebuilt from the shards' index members, not written)"
        listed = {s["name"] for s in manifest["shards"]}
        unlisted = [p.name for p in folder.shard_files if p.name not in listed]
        if unlisted:  # a summary of the listed shards only would misreport the folder (0 samples, say)
            more = f" and {len(unlisted) - 1} more" if len(unlisted) > 1 else ""
            raise UsageError(
                f"{d}: {unlisted[0]}{more} in the folder but not listed in its {MANIFEST_NAME} "
                f"(which lists {len(listed)} shards); {check}"
            )
        for shard in manifest["shards"]:
            size = (d / shard["name"]).stat().st_size
            if size != shard["bytes"]:
                raise UsageError(
                    f"{d / shard['name']}: {size} bytes, {MANIFEST_NAME} says {shard['bytes']} "
                    f"(truncated or changed); {check}"
                )
        return manifest, sample_metas(d, manifest), note
    except FileNotFoundError as err:
        raise UsageError(f"{d}: {Path(str(err.filename)).name} is listed but missing; {check}") from None
    except ValueError as err:
        if isinstance(err, UsageError):
            raise
        raise UsageError(f"{d}: {err}; {check}") from None
