"""DeepSpeed: the precision blocks of a DeepSpeed config (ds_config.json), to merge into the user's.

Checked against DeepSpeed 0.19.8 (deepspeed/runtime/constants.py, config.py, engine.py,
torch_autocast.py). The mixed modes use the ``torch_autocast`` block: the engine runs the forward
under ``torch.autocast(dtype)`` with fp32 parameters and, for float16, a ``torch.amp.GradScaler``
with PyTorch's defaults (initial scale 2**16, growth interval 2000), which is what ampkit does.
DeepSpeed's native ``fp16``/``bf16`` blocks instead hold the whole model in 16 bits (LayerNorm
included) with fp32 master weights in the optimizer; they serve only the true-half row. Every
export states all three switches, so :func:`ampkit.integrations.merge.merge_into` can tell when a
user's config enables a contradictory one.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from typing import Any, ClassVar

from .base import Exporter, Row

_OFF = {"fp16": {"enabled": False}, "bf16": {"enabled": False}, "torch_autocast": {"enabled": False}}


def _autocast(dtype: str) -> dict[str, Any]:
    return {
        "torch_autocast": {"enabled": True, "dtype": dtype},
        "fp16": {"enabled": False},
        "bf16": {"enabled": False},
    }


#: DeepSpeed's native fp16 block set to ampkit's scaler (DeepSpeed's own defaults differ).
NATIVE_FP16 = {
    "enabled": True,
    "loss_scale": 0,
    "initial_scale_power": 16,
    "loss_scale_window": 2000,
    "hysteresis": 1,
}
_NATIVE_FP16_NOTE = (
    "DeepSpeed's native fp16 block instead holds the model in float16 with fp32 master weights (not "
    "ampkit's autocast); if you keep it, set it to ampkit's scaler: "
    f'"fp16": {json.dumps(NATIVE_FP16)} (DeepSpeed\'s defaults are loss_scale_window 1000, where '
    "ampkit's GradScaler grows every 2000 steps, and hysteresis 2, where ampkit backs off at the "
    "first overflow)."
)


class DeepSpeedExporter(Exporter):
    """Precision blocks to merge into a DeepSpeed config."""

    name = "deepspeed"
    title = "DeepSpeed"
    config_kind = (
        "DeepSpeed config fragment (JSON): ampkit export --merge-into ds_config.json merges it into yours"
    )
    rows: ClassVar[Mapping[str, Row]] = {
        "fp64": Row("none"),
        "fp32": Row("exact", _OFF, notes=("fp32 is DeepSpeed's default: no precision block enabled.",)),
        "tf32": Row(
            "exact",
            _OFF,
            notes=("DeepSpeed has no TF32 key; the TF32 lines or the environment line do it.",),
        ),
        "bf16-mixed": Row(
            "exact",
            _autocast("bfloat16"),
            notes=(
                "torch_autocast: bfloat16 autocast with fp32 parameters and no loss scaling, as ampkit "
                "(DeepSpeed's native bf16 block would hold the whole model in bfloat16).",
            ),
        ),
        "fp16-mixed": Row(
            "exact",
            _autocast("float16"),
            notes=(
                "torch_autocast float16: DeepSpeed scales the loss with torch.amp.GradScaler at PyTorch's "
                "defaults (initial scale 2**16, growth interval 2000), as ampkit; the fp16 block's "
                "loss_scale_window/hysteresis do not apply to it.",
                _NATIVE_FP16_NOTE,
            ),
        ),
        "bf16-true": Row(
            "approximate",
            {
                "bf16": {
                    "enabled": True,
                    "bf16_master_weights_and_grads": True,
                    "bf16_optimizer_states": True,
                },
                "fp16": {"enabled": False},
                "torch_autocast": {"enabled": False},
                "zero_optimization": {"stage": 1},
            },
            notes=(
                "Master weights, gradients and optimizer state in bfloat16 need ZeRO stage 1-3: a merge "
                "keeps your stage when it is >= 1 and sets 1 only when you have none.",
                "DeepSpeed casts the whole model, normalisation layers included; ampkit keeps those in fp32.",
                "Cast your inputs to bfloat16 too: the native bf16 engine does not, and fp32 inputs fail "
                "in the first Linear.",
            ),
        ),
        "fp16-true": Row(
            "none",
            notes=(
                "fp16_master_weights_and_grads needs ZeRO-Offload with DeepSpeedCPUAdam, keeps optimizer "
                "state in fp32 and still scales the loss: not true fp16.",
            ),
        ),
        "fp8-mixed": Row(
            "none", notes=("DeepSpeed has no FP8 config key; FP8 comes from TransformerEngine layers.",)
        ),
        "int8-qat": Row(
            "none",
            notes=(
                "DeepSpeed has no QAT precision block (its compression library, compression_training, "
                "is gone in DeepSpeed 0.19.8).",
            ),
        ),
    }

    def config(self, value: Any, device: str) -> dict[str, Any]:
        """The precision blocks; the rest of ds_config.json (batch sizes, optimizer, ZeRO) stays yours."""
        return copy.deepcopy(value)  # callers may edit their copy, never the table

    def code(self, value: Any, config: dict[str, Any], device: str) -> list[str]:
        """``deepspeed.initialize`` with the config that ``ampkit export --merge-into`` wrote."""
        return [
            "import deepspeed",
            "# ds_config: your config with the fragment merged in by "
            "`ampkit export ... --merge-into ds_config.json` or ampkit.integrations.merge_into",
            "engine, optimizer, _, _ = deepspeed.initialize("
            "model=model, model_parameters=model.parameters(), config=ds_config)",
        ]
