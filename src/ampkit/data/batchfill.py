"""One batch under construction: checked samples widened straight into their rows.

Each sample's stored values (a float16/bfloat16/int16 view of the read buffer) are written into
row ``i`` of one batch tensor: widened to float32 by one ``copy_`` and preprocessed elementwise
while the row is in the CPU cache (``output_dtype="float32"``), or copied as 2-byte values for the
training device to widen (``float16``/``bfloat16``/``stored``; a stored dtype other than the output
dtype is converted only when that is exact). No per-sample tensors, no ``torch.stack``.

``label=`` values (``y``) are checked per sample (:mod:`ampkit.data.labels`): a sample whose label
is missing, not a number, or beyond int64/float32 is damaged (a ShardError naming shard and
sample, skipped under ``on_error="skip"``); a label that no sample of the batch has is the
caller's mistake (a UsageError naming the label and the fields the samples do have).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ..errors import UsageError
from .labels import check_labels, label_tensor
from .preprocess import reshape, scale_
from .spans import Wanted

if TYPE_CHECKING:
    from .batchread import BatchReader

_TORCH = {
    "float32": torch.float32,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "int16": torch.int16,
}


def _values(raw: np.ndarray, dtype: str) -> torch.Tensor:
    """The stored values of a sample as a flat tensor viewing ``raw`` (bytes in the read buffer)."""
    if dtype == "float16":
        return torch.from_numpy(raw.view(np.float16))
    t = torch.from_numpy(raw.view(np.int16))
    return t.view(torch.bfloat16) if dtype == "bfloat16" else t


class Fill:
    """The batch under construction: rows written as samples arrive, in any order."""

    def __init__(self, reader: BatchReader, size: int):
        self.reader, self.size = reader, size
        self.out: torch.Tensor | None = None
        self.ragged: dict[int, torch.Tensor] = {}  # rows whose shape (or dtype) differs from the first
        self.metas: dict[int, dict[str, Any]] = {}

    def _row_dtype(self, meta: dict[str, Any]) -> torch.dtype:
        out = self.reader.output
        return _TORCH[meta["dtype"] if out == "stored" else out]

    def put(self, pos: int, raw: np.ndarray, meta: dict[str, Any]) -> None:
        """Write one checked sample (its stored bytes ``raw`` in the read buffer) into row ``pos``."""
        shape, dtype = tuple(int(n) for n in meta["shape"]), self._row_dtype(meta)
        if self.out is None:
            self.out = self.reader.pool.take((self.size, *shape), dtype)
        if tuple(self.out.shape[1:]) == shape and self.out.dtype == dtype:
            row = self.out[pos]
        else:
            row = self.ragged[pos] = torch.empty(shape, dtype=dtype)
        self.metas[pos] = meta
        src = _values(raw, meta["dtype"])
        flat = row.view(-1)
        if self.reader.output == "float32":
            flat.copy_(src)  # the widening: float16/bfloat16/int16 -> float32 in one pass
            cfg = self.reader.cfg
            scale_(
                row,
                float(meta.get("offset", 0.0)),
                float(meta.get("slope", 1.0)),
                float(meta.get("intercept", 0.0)),
                cfg,
            )
        else:
            flat.copy_(src)
            if src.dtype != flat.dtype and not _exact(flat, src):
                raise UsageError(
                    f"sample {meta['key']} is stored as {meta['dtype']} with values "
                    f"{self.reader.output} cannot hold exactly; valid: output_dtype float32 or "
                    f"{meta['dtype'] if meta['dtype'] != 'int16' else 'stored'}"
                )

    def finish(self, items: list[Wanted], skipped: dict[int, str]) -> dict[str, Any]:
        """The batch dict (rows of skipped samples dropped, plan order kept)."""
        reader = self.reader
        if reader.label is not None:
            self._check_labels(items, skipped)
        kept = [it for it in items if it.pos in self.metas]
        metas = [self.metas[it.pos] for it in kept]
        batch: dict[str, Any] = {
            "index": torch.tensor([it.index for it in kept], dtype=torch.int64),
            "key": [m["key"] for m in metas],
            "meta": [m.get("meta", {}) for m in metas],
            "skipped": [skipped[p] for p in sorted(skipped)],
        }
        if reader.label is not None:
            batch["y"] = label_tensor([m[reader.label] for m in batch["meta"]])
        if not kept or self.out is None:
            batch["x"] = torch.zeros(0)
            return batch if self.out is None else reader.pool.hand_over(batch, "x", self.out)
        if self.ragged:
            return self._finish_ragged(batch, kept, metas)
        rows = self.out  # a view of pooled memory: the pool sees the caller's reference
        if len(kept) < self.size:  # damaged samples left holes: keep the rows that were filled
            rows = rows[torch.tensor([it.pos for it in kept])]
        if reader.output == "float32" and reader.cfg.resize is None:
            batch["x"] = reshape(rows, reader.cfg)
        elif reader.output == "float32":
            with torch.autocast("cpu", enabled=False):  # interpolate under autocast would not be float32
                batch["x"] = reshape(rows, reader.cfg)
        else:
            batch.update(raw=rows, **_vectors(metas))
        return reader.pool.hand_over(batch, "x" if reader.output == "float32" else "raw", self.out)

    def _check_labels(self, items: list[Wanted], skipped: dict[int, str]) -> None:
        """Samples with a bad label: raised, or skipped (dropped from the batch) as damaged."""
        reader, read = self.reader, [it for it in items if it.pos in self.metas]
        assert reader.label is not None
        for it, reason in check_labels(
            [self.metas[it.pos] for it in read], read, reader.label, reader.shards
        ):
            shard, _ = reader.shards.locate(it.index)
            reader._damaged(shard, it, reason, skipped)  # raises ShardError under on_error="raise"
            del self.metas[it.pos]
            self.ragged.pop(it.pos, None)

    def _finish_ragged(
        self, batch: dict[str, Any], kept: list[Wanted], metas: list[dict[str, Any]]
    ) -> dict[str, Any]:
        assert self.out is not None
        if self.reader.output != "float32":
            raise UsageError(
                "a 2-byte batch (output_dtype float16/bfloat16/stored, or on='device') needs one "
                "shape per batch (and one stored dtype for 'stored'); valid: output_dtype='float32'"
            )
        parts = [self.ragged.get(it.pos, self.out[it.pos]) for it in kept]
        with torch.autocast("cpu", enabled=False):
            parts = [reshape(p[None], self.reader.cfg) for p in parts]
        shapes = {tuple(p.shape) for p in parts}
        if len(shapes) > 1:
            raise UsageError(
                f"samples in one batch have shapes {sorted(shapes)}; set PreprocessConfig(resize=...)"
            )
        batch["x"] = torch.cat(parts)
        return self.reader.pool.hand_over(batch, "x", self.out)


def _exact(converted: torch.Tensor, src: torch.Tensor) -> bool:
    """Whether converting ``src`` lost nothing (NaN stays NaN)."""
    back = converted.to(src.dtype)
    if torch.equal(back, src):
        return True
    if not src.is_floating_point():
        return False
    return bool(((back == src) | (back.isnan() & src.isnan())).all())


def _vectors(metas: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
    """Per-sample ``offset``/``slope``/``intercept`` vectors for the device stage."""
    defaults = {"offset": 0.0, "slope": 1.0, "intercept": 0.0}
    return {
        name: torch.tensor([float(m.get(name, d)) for m in metas], dtype=torch.float32)
        for name, d in defaults.items()
    }
