"""Accounting over stored samples: byte totals, storage ratios, dtype counts, worst errors.

Everything is derived from the shard list and the per-sample JSONs alone, so a manifest
rebuilt from the shards (``format.rebuild_manifest``) equals the one ``convert`` wrote.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

from .format import FORMAT


def numel(meta: dict[str, Any]) -> int:
    """Number of values in one sample."""
    return int(np.prod([int(n) for n in meta["shape"]], dtype=np.int64))


def source_nbytes(meta: dict[str, Any]) -> int:
    """Bytes of the sample's source array in its source dtype (what it took in memory/on disk uncompressed)."""
    return numel(meta) * np.dtype(meta["source_dtype"]).itemsize


def worst_error(metas: list[dict[str, Any]]) -> dict[str, Any]:
    """The largest max-abs and max-rel errors over samples, with the sample keys holding them."""
    out: dict[str, Any] = {"max_abs": 0.0, "max_abs_key": None, "max_rel": 0.0, "max_rel_key": None}
    for m in metas:
        for kind in ("max_abs", "max_rel"):
            value = float(m["error"][kind])
            if out[f"{kind}_key"] is None or value > out[kind]:
                out[kind], out[f"{kind}_key"] = value, m["key"]
    return out


def build_manifest(shards: list[dict[str, Any]], metas: list[dict[str, Any]]) -> dict[str, Any]:
    """The ``manifest.json`` dict for ``shards`` (name, sha256, bytes, count, samples) and their sample metas.

    ``stored_bytes`` counts whole shard files (tar headers, JSON and padding included), so the
    ratios are what the disk really holds; ``payload_bytes`` counts the ``.bin`` members only.
    ``nonfinite`` counts the NaN/Inf values stored as such (``--on-nonfinite keep``), which the
    error figures leave out (they are taken over finite values).
    """
    source = sum(source_nbytes(m) for m in metas)
    float32_bytes = sum(numel(m) * 4 for m in metas)
    stored = sum(int(s["bytes"]) for s in shards)
    payload = sum(int(e["bin"][1]) for s in shards for e in s["samples"])
    clipped = sum(int(m.get("overflow_clipped", 0)) for m in metas)
    nonfinite = sum(int(m.get("nonfinite", 0)) for m in metas)
    return {
        "format": FORMAT,
        "shards": shards,
        "total_samples": len(metas),
        "source_bytes": source,
        "stored_bytes": stored,
        "payload_bytes": payload,
        "storage_ratio_vs_float32": stored / float32_bytes if float32_bytes else 0.0,
        "storage_ratio_vs_source": stored / source if source else 0.0,
        "dtype_counts": dict(sorted(Counter(m["dtype"] for m in metas).items())),
        "worst_error": worst_error(metas),
        "overflow_clipped": clipped,
        "nonfinite": nonfinite,
    }
