"""Keras 3: the global dtype policy, ``LossScaleOptimizer`` for fp16, float32 normalisation layers.

Checked against keras 3.15.1 on the torch backend (``KERAS_BACKEND=torch``; no TensorFlow).
A policy ``"mixed_bfloat16"`` keeps variables in float32 and casts every layer's inputs to
bfloat16; unlike ``torch.autocast`` it has no list of ops kept in float32, so normalisation,
softmax and the loss run in bfloat16 unless their layer is built with ``dtype="float32"``.
``LossScaleOptimizer`` defaults to ``initial_scale=2**15``; the export sets ampkit's 2**16
(its ``dynamic_growth_steps=2000`` already matches ampkit's growth interval).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from .base import Exporter, Row

_ISLANDS = (
    "Keras casts every layer to the policy's compute dtype, normalisation and softmax included, where "
    'ampkit\'s autocast keeps those ops in float32: build them with dtype="float32" '
    '(keras.layers.LayerNormalization(dtype="float32"), the output layer too) to come close.'
)
_NORMS = (
    "ampkit keeps normalisation layers in float32 in the true-half modes: build them with "
    'dtype="float32" (e.g. keras.layers.LayerNormalization(dtype="float32")); Keras casts their '
    "inputs and outputs."
)
#: ampkit's GradScaler: initial scale 2**16, growth every 2000 steps without overflow.
LOSS_SCALE = "initial_scale=2.0**16, dynamic_growth_steps=2000"


class KerasExporter(Exporter):
    """``keras.mixed_precision.set_global_policy(...)`` on the torch backend."""

    name = "keras"
    title = "Keras"
    config_kind = (
        "Keras dtype policy, serialized (JSON): "
        "keras.config.set_dtype_policy(keras.dtype_policies.deserialize(POLICY))"
    )
    rows: ClassVar[Mapping[str, Row]] = {
        "fp64": Row("exact", "float64"),
        "fp32": Row("exact", "float32"),
        "tf32": Row(
            "exact", "float32", notes=("Keras has no TF32 option; on the torch backend the flags do it.",)
        ),
        "bf16-mixed": Row("approximate", "mixed_bfloat16", notes=(_ISLANDS,)),
        "fp16-mixed": Row(
            "approximate",
            "mixed_float16",
            notes=(
                _ISLANDS,
                f"LossScaleOptimizer({LOSS_SCALE}) is ampkit's dynamic loss scaling (Keras's default "
                "initial scale is 2**15).",
            ),
        ),
        "bf16-true": Row("approximate", "bfloat16", notes=(_NORMS,)),
        "fp16-true": Row("approximate", "float16", notes=(_NORMS,)),
        "fp8-mixed": Row(
            "none",
            notes=(
                'Keras\'s model.quantize("float8") is its own FP8 training recipe (delayed scaling of '
                "Dense layers), not checked against ampkit's.",
            ),
        ),
        "int8-qat": Row(
            "none", notes=('Keras\'s model.quantize("int8") quantises trained weights; it is not QAT.',)
        ),
    }

    def config(self, value: Any, device: str) -> dict[str, Any]:
        """What ``keras.dtype_policies.serialize`` writes for the policy."""
        return {
            "module": "keras",
            "class_name": "DTypePolicy",
            "config": {"name": value},
            "registered_name": None,
        }

    def code(self, value: Any, config: dict[str, Any], device: str) -> list[str]:
        """Backend, policy, and (fp16) the loss-scale optimizer, before the model is built."""
        lines = [
            "import os",
            'os.environ.setdefault("KERAS_BACKEND", "torch")  # before the first `import keras`',
            "import keras",
            f'keras.mixed_precision.set_global_policy("{value}")  # before building the model',
        ]
        if value in ("bfloat16", "float16"):
            lines.append(
                'NORM_DTYPE = "float32"  # keras.layers.LayerNormalization(dtype=NORM_DTYPE), as ampkit'
            )
        if value == "mixed_float16":
            lines.append(
                f"optimizer = keras.optimizers.LossScaleOptimizer(keras.optimizers.AdamW(), {LOSS_SCALE})"
                "  # wrap your optimizer"
            )
        return lines
