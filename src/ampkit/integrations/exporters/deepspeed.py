"""DeepSpeed: the ``fp16`` / ``bf16`` blocks of a DeepSpeed config (ds_config.json).

Checked against DeepSpeed's docs/_pages/config-json.md and docs/code-docs/source/training.rst:
``fp16.loss_scale = 0`` means dynamic loss scaling starting at ``2**initial_scale_power``; ``bf16``
needs no loss scaling. Both are DeepSpeed's *native* mixed precision: the engine holds the model in
16 bits and the optimizer keeps fp32 master weights (no autocast). The autocast-based alternative
is the ``torch_autocast`` block, which cannot be combined with ``fp16`` or ``bf16``.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any, ClassVar

from .base import TF32_OFF, TF32_ON, Exporter, Row

_NEITHER = {"fp16": {"enabled": False}, "bf16": {"enabled": False}}
_NATIVE = (
    "DeepSpeed's native {what} keeps the model in {dtype} with fp32 master weights in the optimizer "
    "and runs forward and backward in {dtype}; ampkit autocasts (fp32 weights, precision-sensitive "
    "ops in fp32)."
)
_AUTOCAST = (
    "Autocast-exact alternative in recent DeepSpeed: "
    '{{"torch_autocast": {{"enabled": true, "dtype": "{dtype}"}}}} '
    "instead of this block (never both)."
)


class DeepSpeedExporter(Exporter):
    """Precision blocks to merge into a DeepSpeed config."""

    name = "deepspeed"
    title = "DeepSpeed"
    config_kind = "DeepSpeed config fragment (JSON): merge into ds_config.json"
    rows: ClassVar[Mapping[str, Row]] = {
        "fp64": Row("none"),
        "fp32": Row(
            "exact", _NEITHER, TF32_OFF, notes=("fp32 is DeepSpeed's default: neither block enabled.",)
        ),
        "tf32": Row(
            "exact", _NEITHER, TF32_ON, notes=("DeepSpeed has no TF32 key; set the flags in your script.",)
        ),
        "bf16-mixed": Row(
            "approximate",
            {"bf16": {"enabled": True}},
            notes=(
                _NATIVE.format(what="bf16", dtype="bfloat16"),
                _AUTOCAST.format(dtype="bfloat16"),
            ),
        ),
        "fp16-mixed": Row(
            "approximate",
            # loss_scale 0 = dynamic; 2**16 matches ampkit's INITIAL_LOSS_SCALE.
            {"fp16": {"enabled": True, "loss_scale": 0, "initial_scale_power": 16}},
            notes=(
                _NATIVE.format(what="fp16", dtype="float16"),
                _AUTOCAST.format(dtype="float16") + " DeepSpeed then applies the grad scaler itself.",
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
                "zero_optimization": {"stage": 1},
            },
            notes=(
                "Master weights, gradients and optimizer state in bfloat16: recent DeepSpeed only, "
                "ZeRO stage 1-3 only (keep your own stage if it is >= 1).",
                "DeepSpeed casts the whole model, normalisation layers included; ampkit keeps those in fp32.",
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
                "DeepSpeed's compression library does QAT through compression_training, "
                "not a precision block.",
            ),
        ),
    }

    def config(self, value: Any) -> dict[str, Any]:
        """The precision blocks; the rest of ds_config.json (batch sizes, optimizer, ZeRO) stays yours."""
        return copy.deepcopy(value)  # callers may edit their copy, never the table

    def code(self, value: Any) -> list[str]:
        """``deepspeed.initialize`` with the blocks merged into the user's config."""
        return [
            "import deepspeed",
            f"ds_config.update({value!r})  # ds_config: your existing DeepSpeed config dict",
            "engine, optimizer, _, _ = deepspeed.initialize("
            "model=model, model_parameters=model.parameters(), config=ds_config)",
        ]
