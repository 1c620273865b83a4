"""The loaders' ``label=``: each sample's label checked before it becomes a row of ``y``.

A label comes from the sample's ``meta`` (a source's sidecar JSON, copied by ``convert``), so it
may be anything JSON holds. ``y`` is int64 when every label of the batch is a whole number (JSON
``true``/``false`` count as 1/0), float32 otherwise. A sample whose label cannot be such a value is
damaged, like a sample whose bytes do not match their checksum: missing, not a number (a string,
list, object or null), a whole number beyond int64, or a number that is not finite in float32
(``1e308``, ``NaN``) — each reason names the value. A label that no sample of a batch has is no
damage but the caller's mistake (a misspelt name, a folder converted without labels):
:class:`~ampkit.errors.UsageError` naming the label and the fields the samples do hold.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ..errors import UsageError

if TYPE_CHECKING:
    from .samples import ShardSet
    from .spans import Wanted

#: Whole-number labels become int64: the range they must fit.
INT64 = (-(2**63), 2**63 - 1)
#: The largest float32 (a larger label would become inf).
FLOAT32_MAX = float(np.finfo(np.float32).max)


def _shown(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _kind(value: Any) -> str:
    names = {str: "a string", list: "a list", dict: "an object", type(None): "null"}
    return names.get(type(value), type(value).__name__)


def label_problem(meta: Any, label: str) -> str | None:
    """Why sample ``meta``'s ``label`` cannot be a row of ``y`` (None when it can)."""
    if not isinstance(meta, dict) or label not in meta:
        return f"no label {label!r} in its meta"
    value = meta[label]
    where = f"label {label!r} = {_shown(value)}"
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        if not INT64[0] <= value <= INT64[1]:
            return f"{where}: beyond int64; valid: whole numbers from -2**63 to 2**63-1"
        return None
    if isinstance(value, float):
        if not math.isfinite(value):
            return f"{where}: not a finite number; valid: a finite number"
        with np.errstate(over="ignore"):
            if not np.isfinite(np.float32(value)):
                return f"{where}: beyond float32 (it would be inf); valid: numbers up to {FLOAT32_MAX:.6g}"
        return None
    return f"{where} is {_kind(value)}; valid: a number (int64 or float32)"


def check_labels(
    metas: Sequence[dict[str, Any]], items: Sequence[Wanted], label: str, shards: ShardSet
) -> list[tuple[Wanted, str]]:
    """``(item, reason)`` for each sample of a batch whose label is bad (``metas[i]`` is ``items[i]``'s).

    Raises :class:`UsageError` when no sample of a non-empty batch has the label at all.
    """
    inner = [m.get("meta", {}) for m in metas]
    if inner and not any(isinstance(m, dict) and label in m for m in inner):
        shard, _ = shards.locate(items[0].index)
        fields = sorted(inner[0]) if isinstance(inner[0], dict) else []
        holds = f"holds {', '.join(map(repr, fields[:10]))}" if fields else "has no meta fields"
        hint = f"one of those, e.g. label={fields[0]!r}" if fields else "a folder converted with labels"
        raise UsageError(
            f"label={label!r}: no sample of this batch has it in its meta (sample {items[0].entry['key']} "
            f"of {shards.shards[shard]['name']} {holds}); valid: {hint}"
        )
    out = []
    for item, meta in zip(items, inner):
        reason = label_problem(meta, label)
        if reason is not None:
            out.append((item, reason))
    return out


def label_tensor(values: list[Any]) -> torch.Tensor:
    """``y`` of checked labels: int64 when all are whole numbers, else float32."""
    whole = all(isinstance(v, int) for v in values)  # True/False are ints
    return torch.tensor(
        [int(v) if whole else float(v) for v in values], dtype=torch.int64 if whole else torch.float32
    )
