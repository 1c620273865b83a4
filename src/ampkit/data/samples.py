"""What both loaders share: the manifest view, sample checks, damage reports and batch assembly.

Integrity model. Every shard's sha256 (in ``manifest.json``) is checked the first time a
process opens the shard, so normal reading costs one hash per shard, not one per sample. When
it fails, the shard is scanned once by the manifest's offsets and each sample is checked on its
own (its ``sha256`` of bin+json bytes from the index when present, then JSON, key, dtype and
size), which localises the damage to samples. ``on_error="raise"`` raises :class:`ShardError`
naming the shard and the damaged key(s); ``on_error="skip"`` skips only those samples, counts
them in each batch's ``"skipped"`` list and logs one warning per damaged shard. If the hash fails
but no sample can be blamed (damage in tar headers or padding), the samples are used: their
own checks passed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from ..errors import UsageError
from . import schema
from .format import STORED_DTYPES, decode_tensor, load_manifest, read_member
from .preprocess import PreprocessConfig, apply_chain

log = logging.getLogger("ampkit.data")

OnError = Literal["raise", "skip"]
"""``raise``: stop at the first damaged sample; ``skip``: leave it out and count it."""

Verify = Literal["shard", "sample", "off"]
"""When the indexed loader checks sha256: a shard's whole file at first open, each sample as read, or never."""


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


@dataclass
class ShardSet:
    """The manifest of a shard directory, indexed for lookups by global sample index."""

    directory: Path
    """The shard directory."""
    shards: list[dict[str, Any]]
    """Manifest shard entries: name, sha256, bytes, count, samples."""
    starts: np.ndarray = field(init=False)
    """Global index of each shard's first sample."""

    def __post_init__(self) -> None:
        self.starts = np.concatenate([[0], np.cumsum(self.counts)[:-1]]).astype(np.int64)

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
        return int(sum(self.counts))

    def locate(self, index: int) -> tuple[int, dict[str, Any]]:
        """``(shard number, index entry)`` of global sample ``index``."""
        if not 0 <= index < len(self):
            raise IndexError(f"sample {index} out of range 0..{len(self) - 1}")
        s = int(np.searchsorted(self.starts, index, side="right") - 1)
        return s, self.shards[s]["samples"][index - int(self.starts[s])]

    def path(self, shard: int) -> Path:
        """File of shard number ``shard``."""
        return self.directory / self.shards[shard]["name"]


def check_sample(bin_bytes: bytes, json_bytes: bytes, entry: dict[str, Any]) -> dict[str, Any]:
    """The sample's metadata, after checking it against its index entry; ValueError says what is wrong."""
    digest = entry.get("sha256")
    if digest is not None and hashlib.sha256(bin_bytes + json_bytes).hexdigest() != digest:
        raise ValueError("sample sha256 mismatch (bytes changed since conversion)")
    meta = schema.sample_meta(schema.parse_json(json_bytes, "metadata"), "metadata")
    if meta["key"] != entry["key"]:
        raise ValueError(f"metadata key {meta['key']!r} != index key")
    dtype = STORED_DTYPES.get(meta["dtype"])
    if dtype is None:
        raise ValueError(f"unknown stored dtype {meta.get('dtype')!r}")
    expect = schema.nbytes(meta["shape"], dtype.itemsize)
    if len(bin_bytes) != expect:
        raise ValueError(f"{len(bin_bytes)} data bytes, shape {meta['shape']} needs {expect}")
    return dict(meta)


def scan_shard(path: Path, entries: list[dict[str, Any]]) -> dict[str, str]:
    """Damaged samples of one shard, ``{key: reason}``, by reading each entry at its offsets."""
    damaged: dict[str, str] = {}
    try:
        fh = open(path, "rb")  # noqa: SIM115 (closed below)
    except OSError as err:
        return {e["key"]: f"cannot open shard ({err})" for e in entries}
    with fh:
        for e in entries:
            try:
                check_sample(read_member(fh, e["bin"]), read_member(fh, e["json"]), e)
            except (ValueError, OSError) as err:
                damaged[e["key"]] = str(err)
    return damaged


def shard_damage(shard: str, damaged: dict[str, str], on_error: OnError) -> None:
    """Report a shard whose sha256 failed: raise naming the key(s), or warn once and go on."""
    if damaged:
        keys = sorted(damaged)
        more = f" (+{len(keys) - 1} more)" if len(keys) > 1 else ""
        reason = f"sha256 mismatch; {damaged[keys[0]]}{more}"
        if on_error == "raise":
            raise ShardError(shard, keys[0], reason)
        log.warning("%s: sha256 mismatch; skipping damaged samples %s", shard, ", ".join(keys))
    else:
        # headers/padding changed, every sample's own check passed: the data is usable
        log.warning("%s: sha256 mismatch outside sample data; samples pass their own checks", shard)


@dataclass
class Decoded:
    """One sample read back: the stored 2-byte tensor and its metadata."""

    index: int
    """Global sample index."""
    raw: torch.Tensor
    """Stored values (float16, bfloat16 or int16), shaped."""
    meta: dict[str, Any]
    """The sample's ``.json`` metadata."""


def decode(index: int, bin_bytes: bytes, json_bytes: bytes, entry: dict[str, Any], checked: bool) -> Decoded:
    """Decode one sample; ``checked`` runs :func:`check_sample` first (suspect shards)."""
    meta = check_sample(bin_bytes, json_bytes, entry) if checked else json.loads(json_bytes)
    raw, _ = decode_tensor(bytearray(bin_bytes), meta)
    return Decoded(index, raw, meta)


def _vector(samples: list[Decoded], name: str, default: float) -> torch.Tensor:
    return torch.tensor([float(s.meta.get(name, default)) for s in samples], dtype=torch.float32)


def assemble(
    samples: list[Decoded], cfg: PreprocessConfig, label: str | None, skipped: list[str]
) -> dict[str, Any]:
    """A batch dict from decoded samples (preprocessed here, or left 2-byte for ``cfg.on="device"``).

    Keys: ``x`` (float32, or ``raw`` + ``offset``/``slope``/``intercept`` for the device stage),
    ``index`` (int64), ``key``, ``meta`` (each sample's ``meta`` dict), ``y`` when ``label`` is
    set, and ``skipped`` (keys of damaged samples left out of this batch).
    """
    batch: dict[str, Any] = {
        "index": torch.tensor([s.index for s in samples], dtype=torch.int64),
        "key": [s.meta["key"] for s in samples],
        "meta": [s.meta.get("meta", {}) for s in samples],
        "skipped": list(skipped),
    }
    if label is not None:
        values = [m[label] for m in batch["meta"]]
        kind = torch.int64 if all(isinstance(v, int) for v in values) else torch.float32
        batch["y"] = torch.tensor(values, dtype=kind)
    if not samples:
        batch["x"] = torch.zeros(0)
        return batch
    with torch.autocast("cpu", enabled=False):  # stacking 2-byte data must not be autocast (eval)
        _fill(batch, samples, cfg)
    return batch


def _fill(batch: dict[str, Any], samples: list[Decoded], cfg: PreprocessConfig) -> None:
    offset, slope, intercept = (
        _vector(samples, "offset", 0),
        _vector(samples, "slope", 1),
        _vector(samples, "intercept", 0),
    )
    uniform = len({(s.raw.dtype, tuple(s.raw.shape)) for s in samples}) == 1
    if cfg.on == "device":
        if not uniform:
            raise UsageError(
                "preprocess on='device' needs one stored dtype and shape per batch; use on='cpu'"
            )
        batch.update(
            raw=torch.stack([s.raw for s in samples]), offset=offset, slope=slope, intercept=intercept
        )
    elif uniform:  # stack the 2-byte values, widen once: half the copying of stacking float32
        batch["x"] = apply_chain(torch.stack([s.raw for s in samples]), offset, slope, intercept, cfg)
    else:
        parts = [
            apply_chain(s.raw[None], offset[i : i + 1], slope[i : i + 1], intercept[i : i + 1], cfg)
            for i, s in enumerate(samples)
        ]
        shapes = {tuple(p.shape) for p in parts}
        if len(shapes) > 1:
            raise UsageError(
                f"samples in one batch have shapes {sorted(shapes)}; set PreprocessConfig(resize=...)"
            )
        batch["x"] = torch.cat(parts)
