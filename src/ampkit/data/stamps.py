"""Source stamps: whether a shard kept from an earlier ``convert`` still holds what its sources hold.

A rerun of the same command keeps the complete shards of an earlier run. Keys and source paths
alone cannot tell that the sources were rewritten since (same names, same shapes, new values),
so ``.convert.json`` also records, per shard of the plan, a stamp of its sources: a digest of
each source's path, array key, and the size and modification time (ns) of the file and of its
sidecar, as :func:`ampkit.data.sources.discover` found them (``os.stat``: nothing is read). A kept
shard whose stamp differs, or was never recorded, is written again.

The stamps are taken before a source is read, so a source changed while a run reads it leaves
a stamp older than its file: the next run rewrites that shard rather than trusting it. They
live in ``.convert.json`` only, never in the shards, whose bytes depend on the data alone.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from .sources import Source

STAMPS_KEY = "sources"
"""The ``.convert.json`` field holding one stamp (or null: not trusted) per shard of the plan."""


def shard_stamp(sources: list[Source], members: list[int]) -> str:
    """The stamp of one shard: 16 hex digits of the sha256 of its members' paths, keys and file stamps."""
    described = [[sources[i].path, sources[i].array_key, *sources[i].stamp] for i in members]
    return hashlib.sha256(json.dumps(described).encode("utf-8")).hexdigest()[:16]


def plan_stamps(sources: list[Source], plan: list[list[int]]) -> list[str]:
    """The stamp of every shard of ``plan``, in shard order."""
    return [shard_stamp(sources, members) for members in plan]


def recorded(settings: Any, shards: int) -> list[str | None]:
    """The stamps an earlier run recorded in ``.convert.json`` for shards ``0..shards-1`` (None where
    none was, or it is not one; a shard whose members changed has another stamp anyway)."""
    found = settings.get(STAMPS_KEY) if isinstance(settings, dict) else None
    found = found if isinstance(found, list) else []
    return [found[n] if n < len(found) and isinstance(found[n], str) else None for n in range(shards)]
