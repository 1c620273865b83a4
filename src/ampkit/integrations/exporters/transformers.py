"""Hugging Face Transformers: the precision fields of ``TrainingArguments`` (``Trainer``).

Checked against transformers 5.24.0 (transformers/training_args.py): the precision fields are
``bf16``, ``fp16`` (at most one of them), ``tf32`` (``None`` leaves PyTorch's flags alone) and,
for evaluation only, ``bf16_full_eval``/``fp16_full_eval``. ``half_precision_backend`` and
``fp16_opt_level`` (Apex) are gone in 5.x: the Trainer always autocasts through Accelerate.
``tf32=True`` raises without an Ampere-or-newer GPU, and ``bf16=True`` needs ``use_cpu=True``
on a machine without a bf16 GPU.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from .base import Exporter, Row, Tf32, on_cpu

_OFF = {"bf16": False, "fp16": False}
_TRUE_HALF = (
    "The Trainer only autocasts; it has no field that trains the parameters themselves in half "
    "precision. Closest: load the model with from_pretrained(..., dtype={dtype}) and keep bf16/fp16 "
    "False (the whole model, normalisation layers included, and no fp32 master weights)."
)


class TransformersExporter(Exporter):
    """``TrainingArguments(bf16=..., fp16=..., tf32=...)``."""

    name = "transformers"
    title = "Transformers"
    config_kind = (
        "TrainingArguments fields (JSON): TrainingArguments(output_dir=..., **FIELDS), or "
        "HfArgumentParser(TrainingArguments).parse_dict"
    )
    tf32_field = "tf32"
    rows: ClassVar[Mapping[str, Row]] = {
        "fp64": Row(
            "none",
            notes=("Closest: model.double() with float64 inputs and bf16/fp16 False (untested by HF).",),
        ),
        "fp32": Row("exact", _OFF),
        "tf32": on_cpu(
            Row("exact", _OFF),
            "exact",
            "TF32 exists only on NVIDIA GPUs (TrainingArguments(tf32=True) raises without one), so the "
            "CPU export leaves tf32 unset: the run is fp32, as ampkit's tf32 on a CPU.",
        ),
        "bf16-mixed": Row(
            "exact",
            {"bf16": True, "fp16": False},
            notes=("bf16=True: Accelerate's bfloat16 autocast, fp32 weights, no loss scaler.",),
        ),
        "fp16-mixed": on_cpu(
            Row(
                "exact",
                {"bf16": False, "fp16": True},
                notes=(
                    "fp16=True: Accelerate's float16 autocast with PyTorch's default GradScaler "
                    "(initial scale 2**16, growth interval 2000), as ampkit.",
                ),
            ),
            "approximate",
            "On CPU the Trainer accepts fp16=True but Accelerate neither autocasts nor scales there: the run "
            "is fp32 (ampkit autocasts to float16 on a CPU).",
        ),
        "bf16-true": Row("none", notes=(_TRUE_HALF.format(dtype="torch.bfloat16"),)),
        "fp16-true": Row("none", notes=(_TRUE_HALF.format(dtype="torch.float16"),)),
        "fp8-mixed": Row(
            "none",
            notes=(
                "TrainingArguments has no FP8 field; `accelerate launch --mixed_precision fp8` with an FP8 "
                "backend and GPU is Accelerate's route (see --to accelerate).",
            ),
        ),
        "int8-qat": Row("none", notes=("TrainingArguments has no quantisation-aware training field.",)),
    }

    def config(self, value: Any, device: str) -> dict[str, Any]:
        """The precision fields; ``use_cpu`` for a CPU export (``bf16=True`` needs it there)."""
        fields = dict(value)
        if device == "cpu":
            fields["use_cpu"] = True
        return fields

    def set_tf32(self, config: dict[str, Any], tf32: Tf32, device: str) -> None:
        """``tf32=False`` everywhere but the tf32 row; on a CPU, ``tf32=True`` would raise: left unset."""
        if not (tf32.enabled and device == "cpu"):
            config["tf32"] = tf32.enabled

    def code(self, value: Any, config: dict[str, Any], device: str) -> list[str]:
        """``TrainingArguments(...)`` with the fields, ``tf32`` included."""
        fields = ", ".join(f"{key}={item!r}" for key, item in config.items())
        return [
            "from transformers import TrainingArguments",
            f'args = TrainingArguments(output_dir="out", {fields})  # and your other arguments',
        ]
