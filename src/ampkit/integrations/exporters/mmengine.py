"""MMEngine (OpenMMLab): the ``optim_wrapper`` section of a config.

Checked against mmengine 0.10.7 (mmengine/optim/optimizer/amp_optimizer_wrapper.py):
``AmpOptimWrapper(loss_scale='dynamic', dtype=None)`` autocasts the forward to ``dtype`` and
scales the loss with ``GradScaler(**loss_scale)`` when ``loss_scale`` is a dict, so
``loss_scale=dict(enabled=False)`` gives bf16 autocast without a scaler, as ampkit. Its
constructor asserts a CUDA, NPU, MLU or MUSA device: MMEngine has no CPU mixed precision.
OpenMMLab ``tools/train.py --amp`` switches a config to ``AmpOptimWrapper`` with
``loss_scale='dynamic'`` (float16 by default).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any, ClassVar

from .base import Exporter, Row, on_cpu

_PLAIN = {"type": "OptimWrapper"}
_GPU_ONLY = (
    "AmpOptimWrapper asserts a CUDA/NPU/MLU/MUSA device: MMEngine has no CPU mixed precision "
    "(export with --device cuda for the GPU config)."
)
_TRUE_HALF = (
    "MMEngine's optimizer wrappers keep the parameters as the model built them. Closest: convert "
    "the model with model.to({dtype}) yourself (no fp32 islands, no master weights)."
)


def _py(value: Any) -> str:
    """A config value in MMEngine's Python config style: ``dict(type='AmpOptimWrapper', ...)``."""
    if isinstance(value, dict):
        return "dict(" + ", ".join(f"{key}={_py(item)}" for key, item in value.items()) + ")"
    return repr(value)


class MMEngineExporter(Exporter):
    """``optim_wrapper=dict(type='OptimWrapper' | 'AmpOptimWrapper', ...)``."""

    name = "mmengine"
    title = "MMEngine"
    config_kind = "MMEngine config fragment: merge into your config's optim_wrapper (keep your optimizer=...)"
    rows: ClassVar[Mapping[str, Row]] = {
        "fp64": Row(
            "none",
            notes=("Closest: OptimWrapper with model.double() and float64 data.",),
        ),
        "fp32": Row("exact", _PLAIN),
        "tf32": Row("exact", _PLAIN, notes=("MMEngine has no TF32 option; set the flags in your script.",)),
        "bf16-mixed": on_cpu(
            Row(
                "exact",
                {"type": "AmpOptimWrapper", "dtype": "bfloat16", "loss_scale": {"enabled": False}},
                notes=(
                    "loss_scale=dict(enabled=False) builds a disabled GradScaler: bfloat16 autocast without "
                    "loss scaling, as ampkit (loss_scale='dynamic' would scale the loss for nothing).",
                ),
            ),
            "none",
            _GPU_ONLY,
        ),
        "fp16-mixed": on_cpu(
            Row(
                "exact",
                {"type": "AmpOptimWrapper", "dtype": "float16", "loss_scale": "dynamic"},
                notes=(
                    "Same as OpenMMLab's `tools/train.py CONFIG --amp`; 'dynamic' is PyTorch's default "
                    "GradScaler (initial scale 2**16, growth interval 2000), as ampkit's.",
                ),
            ),
            "none",
            _GPU_ONLY,
        ),
        "bf16-true": Row("none", notes=(_TRUE_HALF.format(dtype="torch.bfloat16"),)),
        "fp16-true": Row("none", notes=(_TRUE_HALF.format(dtype="torch.float16"),)),
        "fp8-mixed": Row("none"),
        "int8-qat": Row(
            "none",
            notes=("QAT for OpenMMLab models lives in MMRazor, not in an MMEngine precision setting.",),
        ),
    }

    def config(self, value: Any, device: str) -> dict[str, Any]:
        """``{"optim_wrapper": {...}}``: MMEngine also reads YAML/JSON configs, so this loads as-is."""
        return {"optim_wrapper": copy.deepcopy(value)}

    def code(self, value: Any, config: dict[str, Any], device: str) -> list[str]:
        """The ``optim_wrapper`` line of a Python config."""
        wrapper = _py(value)[:-1] + ", optimizer=dict(type='SGD', lr=0.01))"
        return [
            "# in your MMEngine config; Runner(..., optim_wrapper=...) takes the same dict",
            f"optim_wrapper = {wrapper}  # keep your own optimizer=dict(...)",
        ]
