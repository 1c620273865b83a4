"""Merge an export into the user's own config: keep everything of theirs, refuse contradictions.

``merge_into(ds_config, export("deepspeed", "bf16-mixed"))`` returns a copy of the user's config
with the export's precision blocks added. The rules:

- A key the user does not have is added; a key with the same value (dtype spellings compared as
  DeepSpeed reads them: ``"bf16"`` is ``"bfloat16"``) stays; ``"auto"`` (Hugging Face's
  placeholder) is replaced by the export's value, with a note.
- A block the user *enabled* (``"enabled": true``) is theirs: if the export disables it, or sets
  one of its keys otherwise, the merge stops with one line naming the key ("ds_config has
  fp16.enabled=true; the export asks bf16-mixed: remove one"). A block the user left disabled
  takes the export's keys, and every other key of it (``loss_scale_window``...) is kept.
- Keys the export sets as a minimum (DeepSpeed's ZeRO stage for bf16 master weights) keep the
  user's value when it is at least that.

Nothing outside the export's keys is touched: ZeRO stage, offload, optimizer, batch sizes and the
user's scaler settings come out as they went in.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from typing import Any

from ..errors import UsageError
from .exporters import EXPORTERS, Export

#: (framework, dotted key) -> why the export's value is a minimum rather than a setting.
FLOORS: dict[tuple[str, str], str] = {
    ("deepspeed", "zero_optimization.stage"): "which needs ZeRO stage 1-3",
}
#: Switches of a framework that ampkit's export never sets but that contradict every export when on.
FOREIGN_SWITCHES: dict[str, tuple[str, ...]] = {"deepspeed": ("amp",)}
#: DeepSpeed's fp16 loss-scaler keys, which only its native fp16 block reads.
_SCALER_KEYS = ("loss_scale", "initial_scale_power", "loss_scale_window", "hysteresis", "min_loss_scale")
#: Spellings DeepSpeed's ``DtypeEnum`` reads as one dtype.
_DTYPES = {
    spelling: name
    for name, spellings in {
        "float16": ("fp16", "float16", "half", "torch.float16"),
        "bfloat16": ("bf16", "bfloat16", "torch.bfloat16"),
        "float32": ("fp32", "float32", "float", "torch.float32"),
    }.items()
    for spelling in spellings
}


@dataclass(frozen=True)
class Merged:
    """The merged config and what the merge changed that the user may not expect."""

    config: dict[str, Any]
    notes: tuple[str, ...]


def _same(user: Any, ours: Any) -> bool:
    if isinstance(user, str) and isinstance(ours, str):
        return _DTYPES.get(user.strip().lower(), user) == _DTYPES.get(ours, ours)
    return type(user) is type(ours) and user == ours


def _show(value: Any) -> str:
    return json.dumps(value)


class _Merger:
    def __init__(self, result: Export, label: str):
        self.result = result
        self.label = label
        self.notes: list[str] = []

    def conflict(self, key: str, value: Any, why: str = "") -> UsageError:
        asks = f"the export asks {self.result.precision}"
        return UsageError(f"{self.label} has {key}={_show(value)}; {asks}{why}: remove one")

    def merge(self, user: dict[str, Any], ours: dict[str, Any], prefix: str, owned: bool) -> None:
        """Merge ``ours`` into ``user`` in place; ``owned``: inside a block the user enabled."""
        for name, value in ours.items():
            key = f"{prefix}{name}"
            if name not in user:
                user[name] = copy.deepcopy(value)
                continue
            mine = user[name]
            if isinstance(value, dict):
                if not isinstance(mine, dict):
                    raise self.conflict(key, mine)
                self.merge(mine, value, f"{key}.", owned or mine.get("enabled") is True)
            else:
                self.leaf(user, name, key, mine, value, owned)

    def leaf(self, user: dict[str, Any], name: str, key: str, mine: Any, value: Any, owned: bool) -> None:
        floor = FLOORS.get((self.result.framework, key))
        if isinstance(mine, str) and mine.strip().lower() == "auto":
            user[name] = value
            self.notes.append(f'{key} was "auto": set to {_show(value)} for {self.result.precision}.')
        elif floor is not None:
            if not isinstance(mine, int) or isinstance(mine, bool) or mine < value:
                raise self.conflict(key, mine, f", {floor}")
        elif _same(mine, value):
            return
        elif name == "enabled" and mine is False:  # a block the user left off: the export turns it on
            user[name] = value
        elif owned or name == "enabled":
            raise self.conflict(key, mine)
        else:  # a key of a block the user left disabled: the export's value takes over
            user[name] = value
            self.notes.append(
                f"{key} was {_show(mine)} in a disabled block: set to {_show(value)} for {self.result.precision}."
            )


def merge(user_config: Any, result: Export, label: str | None = None) -> Merged:
    """Merge ``result``'s config into a copy of ``user_config``; :class:`UsageError` on a contradiction.

    ``label`` names the user's config in messages (default ``"ds_config"`` for DeepSpeed).
    """
    label = label or ("ds_config" if result.framework == "deepspeed" else f"{result.framework} config")
    if result.config is None:
        has = EXPORTERS[result.framework]().has(result.device)
        raise UsageError(f"{result.notes[0].rstrip('.')}: nothing to merge; valid: {', '.join(has)}")
    if not isinstance(user_config, dict):
        raise UsageError(f"{label} is a JSON {type(user_config).__name__}; valid: a JSON object ({{...}})")
    merged = copy.deepcopy(user_config)
    for switch in FOREIGN_SWITCHES.get(result.framework, ()):
        block = merged.get(switch)
        if isinstance(block, dict) and block.get("enabled") is True:
            raise UsageError(
                f"{label} has {switch}.enabled=true; the export asks {result.precision}: remove one"
            )
    merger = _Merger(result, label)
    merger.merge(merged, result.config, "", owned=False)
    for (framework, key), why in FLOORS.items():
        if framework == result.framework and _get(user_config, key) is None and _get(merged, key) is not None:
            merger.notes.append(
                f"{key} set to {_show(_get(merged, key))}: {result.precision} needs "
                f"{why.removeprefix('which needs ')}; set your own stage if you want another."
            )
    scaler = [key for key in _SCALER_KEYS if _get(merged, f"fp16.{key}") is not None]
    autocast_fp16 = _get(merged, "torch_autocast.enabled") is True and _same(
        _get(merged, "torch_autocast.dtype"), "float16"
    )
    if autocast_fp16 and scaler:
        merger.notes.append(
            f"fp16.{', fp16.'.join(scaler)} kept, but unused: with torch_autocast DeepSpeed scales the loss "
            "with torch.amp.GradScaler at PyTorch's defaults (growth interval 2000, as ampkit)."
        )
    return Merged(merged, tuple(merger.notes))


def _get(config: Any, key: str) -> Any:
    """The value at dotted ``key``, ``None`` where it is missing."""
    for part in key.split("."):
        if not isinstance(config, dict) or part not in config:
            return None
        config = config[part]
    return config


def merge_into(user_config: dict[str, Any], result: Export) -> dict[str, Any]:
    """``user_config`` with ``result``'s precision settings merged in (see the module docs)."""
    return merge(user_config, result).config
