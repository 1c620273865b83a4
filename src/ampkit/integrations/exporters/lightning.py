"""Lightning: ``Trainer(precision=...)`` / ``Fabric(precision=...)`` and the LightningCLI config.

Checked against lightning 2.6.6: ``_PRECISION_INPUT_STR`` (lightning/fabric/plugins/precision/
precision.py) is ``"64-true" | "32-true" | "16-mixed" | "bf16-mixed" | "16-true" | "bf16-true"``
plus the TransformerEngine values; the connectors pick the plugin from that string.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from .base import Exporter, Row, on_cpu

# lightning/fabric/plugins/precision/half.py: HalfPrecision.convert_module is module.to(dtype),
# so every layer (normalisation included) is cast; ampkit keeps normalisation layers in fp32.
_WHOLE_MODEL = (
    "Lightning casts the whole model, normalisation layers included; ampkit keeps those in fp32 "
    "(wrap them yourself, or accept the difference)."
)


class LightningExporter(Exporter):
    """The ``precision`` flag shared by ``Trainer`` and ``Fabric``."""

    name = "lightning"
    title = "Lightning"
    config_kind = "LightningCLI config (YAML): python main.py fit --config FILE"
    rows: ClassVar[Mapping[str, Row]] = {
        "fp64": Row("exact", "64-true"),
        "fp32": Row("exact", "32-true"),
        "tf32": Row(
            "exact",
            "32-true",
            notes=('Lightning has no TF32 precision value; "32-true" plus the global flags is its recipe.',),
        ),
        "bf16-mixed": Row("exact", "bf16-mixed"),
        "fp16-mixed": on_cpu(
            Row(
                "exact",
                "16-mixed",
                notes=("Autocast to float16 with PyTorch's default GradScaler, as ampkit.",),
            ),
            "approximate",
            # lightning/fabric/connector.py and the Trainer's accelerator connector.
            'On CPU Lightning replaces "16-mixed" by "bf16-mixed" (with a warning): the run autocasts to '
            "bfloat16 without a scaler, where ampkit autocasts to float16.",
        ),
        "bf16-true": Row("approximate", "bf16-true", notes=(_WHOLE_MODEL,)),
        "fp16-true": Row("approximate", "16-true", notes=(_WHOLE_MODEL,)),
        "fp8-mixed": on_cpu(
            Row(
                "approximate",
                "transformer-engine",
                notes=(
                    "Replaces Linear/LayerNorm by TransformerEngine FP8 layers with a bf16 base "
                    '("transformer-engine-float16" for an fp16 base); needs transformer_engine and an FP8 GPU.',
                ),
            ),
            "none",
            "FP8 needs an NVIDIA GPU with compute capability >= 8.9.",
        ),
        "int8-qat": Row(
            "none",
            notes=("Lightning's int8 option (BitsandbytesPrecision) quantises weights; it is not QAT.",),
        ),
    }

    def config(self, value: Any, device: str) -> dict[str, Any]:
        """The ``trainer`` section of a LightningCLI YAML config (Lightning has no TF32 key)."""
        trainer: dict[str, Any] = {"precision": value}
        if device == "cpu":
            trainer["accelerator"] = "cpu"
        return {"trainer": trainer}

    def code(self, value: Any, config: dict[str, Any], device: str) -> list[str]:
        """The ``Trainer`` line and the ``Fabric`` line (use the one your code is built on)."""
        cpu = 'accelerator="cpu", ' if device == "cpu" else ""
        return [
            "from lightning.pytorch import Trainer",
            f'trainer = Trainer({cpu}precision="{value}")',
            "# or, with Fabric:",
            "from lightning.fabric import Fabric",
            f'fabric = Fabric({cpu}precision="{value}")',
        ]
