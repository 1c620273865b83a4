"""Hugging Face Accelerate: ``Accelerator(mixed_precision=...)`` and the ``accelerate config`` file.

Checked against accelerate 1.15.0: ``PrecisionType`` (accelerate/utils/dataclasses.py) is
``"no" | "fp8" | "fp16" | "bf16"``; there is no TF32 option and no true-half (parameters in
bf16/fp16) mode.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from .base import Exporter, Row, on_cpu

_TRUE_HALF = (
    "Accelerate only autocasts; it never stores the parameters themselves in half precision. "
    'Closest: Accelerator(mixed_precision="no") and model.to({dtype}) before accelerator.prepare(model) '
    "(the whole model, normalisation layers included; ampkit keeps those in fp32)."
)


class AccelerateExporter(Exporter):
    """``mixed_precision`` for ``Accelerator`` and a single-machine ``accelerate launch`` config file."""

    name = "accelerate"
    title = "Accelerate"
    config_kind = "accelerate config file (YAML): accelerate launch --config_file FILE train.py"
    rows: ClassVar[Mapping[str, Row]] = {
        "fp64": Row(
            "none",
            notes=('Closest: Accelerator(mixed_precision="no") with model.double() and float64 inputs.',),
        ),
        "fp32": Row("exact", "no"),
        "tf32": Row(
            "exact",
            "no",
            notes=(
                # accelerate/state.py: with a dynamo backend and mixed_precision "no" on CUDA it sets
                # torch.backends.cuda.matmul.allow_tf32 = True itself (matmuls only, not cuDNN).
                'With a torch.compile (dynamo) backend and mixed_precision "no", Accelerate turns TF32 '
                "matmuls on by itself on CUDA; TF32 convolutions still need the cuDNN flag.",
            ),
        ),
        "bf16-mixed": Row(
            "exact", "bf16", notes=("Autocast to bfloat16, no loss scaler; also works on CPU.",)
        ),
        "fp16-mixed": on_cpu(
            Row(
                "exact",
                "fp16",
                notes=("Autocast to float16 with a dynamic GradScaler (PyTorch's defaults, as ampkit's).",),
            ),
            "approximate",
            # accelerate/accelerator.py: the fp16 branch is skipped for device.type == "cpu", so
            # native_amp stays False: no autocast, no scaler, no error.
            'On CPU Accelerate accepts "fp16" but neither autocasts nor scales: training runs in fp32 '
            "(ampkit autocasts to float16 there).",
        ),
        "bf16-true": Row("none", notes=(_TRUE_HALF.format(dtype="torch.bfloat16"),)),
        "fp16-true": Row("none", notes=(_TRUE_HALF.format(dtype="torch.float16"),)),
        "fp8-mixed": on_cpu(
            Row(
                "approximate",
                "fp8",
                notes=(
                    "Needs an FP8 backend (TransformerEngine, MS-AMP or torchao) and an FP8-capable GPU; "
                    "Accelerate's FP8 recipe decides which layers run in FP8.",
                ),
            ),
            "none",
            "FP8 needs an NVIDIA GPU with compute capability >= 8.9.",
        ),
        "int8-qat": Row("none"),
    }

    def config(self, value: Any, device: str) -> dict[str, Any]:
        """What ``accelerate config default`` writes for one process on one machine (keys as in 1.15.0);
        ``use_cpu`` for a CPU export. Accelerate's config has no TF32 key (see :class:`~.base.Tf32`)."""
        return {
            "compute_environment": "LOCAL_MACHINE",
            "debug": False,
            "distributed_type": "NO",
            "downcast_bf16": False,
            "enable_cpu_affinity": False,
            "machine_rank": 0,
            "main_training_function": "main",
            "mixed_precision": value,
            "num_machines": 1,
            "num_processes": 1,
            "rdzv_backend": "static",
            "same_network": False,
            "tpu_use_cluster": False,
            "tpu_use_sudo": False,
            "use_cpu": device == "cpu",
        }

    def code(self, value: Any, config: dict[str, Any], device: str) -> list[str]:
        """``Accelerator(mixed_precision=...)``."""
        cpu = ", cpu=True" if device == "cpu" else ""
        return [
            "from accelerate import Accelerator",
            f'accelerator = Accelerator(mixed_precision="{value}"{cpu})',
        ]
