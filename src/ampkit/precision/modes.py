"""The precision vocabulary, defined once: every mode ampkit knows and what it does.

Each :class:`ModeSpec` says what the mode does to autocast, parameter dtype, loss scaling,
TF32 flags and optimizer state. Everything else in ampkit reads these specs instead of
comparing strings, so adding a mode means adding one row here.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

#: The one map from short dtype names to torch dtypes (used by CLI, data codec, reports).
DTYPES: dict[str, torch.dtype] = {
    "fp64": torch.float64,
    "fp32": torch.float32,
    "bf16": torch.bfloat16,
    "fp16": torch.float16,
}


def dtype_name(dtype: torch.dtype) -> str:
    """``torch.bfloat16`` -> ``"bfloat16"``: the spelling used in log lines and reports."""
    return str(dtype).removeprefix("torch.")


@dataclass(frozen=True)
class ModeSpec:
    """What one precision mode does to each part of the training pipeline."""

    name: str
    """Canonical name, e.g. ``"bf16-mixed"``."""
    param_dtype: torch.dtype
    """dtype of trainable parameters (and therefore of gradients and optimizer state)."""
    autocast_dtype: torch.dtype | None
    """dtype autocast runs eligible ops in; ``None`` means autocast stays off."""
    grad_scaler: bool
    """Whether a dynamic GradScaler scales the loss (needed for fp16 gradients' small range)."""
    tf32: bool
    """Value of ``torch.backends.cuda.matmul.allow_tf32`` and ``torch.backends.cudnn.allow_tf32``."""
    summary: str
    """One sentence for ``--help``, the README and ``doctor``."""
    quantization: str | None = None
    """Quantisation-aware training scheme (``"int8"``: torch.ao fake-quant, convertible to int8 kernels)."""
    fp8: bool = False
    """``nn.Linear`` matmuls run in float8 (e4m3 forward, e5m2 gradients) with per-tensor scaling."""

    @property
    def is_mixed(self) -> bool:
        """Mixed modes keep fp32 parameters and compute eligible ops in a low dtype."""
        return self.autocast_dtype is not None

    @property
    def is_true_low(self) -> bool:
        """True-half modes store the parameters themselves in bf16/fp16."""
        return self.param_dtype in (torch.bfloat16, torch.float16)

    @property
    def compute_dtype(self) -> torch.dtype:
        """The dtype most matmuls run in under this mode."""
        return self.autocast_dtype or self.param_dtype

    @property
    def uses_fp16(self) -> bool:
        """fp16 arithmetic anywhere (the dtype CPUs lack in hardware)."""
        return self.compute_dtype == torch.float16

    @property
    def uses_bf16(self) -> bool:
        """bf16 arithmetic anywhere."""
        return self.compute_dtype == torch.bfloat16


#: Initial loss scale of the GradScaler (PyTorch's default, 2**16).
INITIAL_LOSS_SCALE = 2.0**16

MODES: dict[str, ModeSpec] = {
    spec.name: spec
    for spec in (
        ModeSpec("fp64", torch.float64, None, False, False, "float64 everywhere; for numerical references."),
        ModeSpec("fp32", torch.float32, None, False, False, "true float32: TF32 off for matmul and cuDNN."),
        ModeSpec(
            "tf32",
            torch.float32,
            None,
            False,
            True,
            "float32 storage, TF32 tensor-core matmul/conv (NVIDIA cc>=8.0).",
        ),
        ModeSpec(
            "bf16-mixed",
            torch.float32,
            torch.bfloat16,
            False,
            False,
            "autocast to bfloat16, fp32 weights, no loss scaling needed (fp32's exponent range).",
        ),
        ModeSpec(
            "fp16-mixed",
            torch.float32,
            torch.float16,
            True,
            False,
            "autocast to float16, fp32 weights, dynamic loss scaling against gradient underflow.",
        ),
        ModeSpec(
            "bf16-true",
            torch.bfloat16,
            None,
            False,
            False,
            "parameters, activations and optimizer state in bfloat16; normalisation layers stay fp32.",
        ),
        ModeSpec(
            "fp16-true",
            torch.float16,
            None,
            False,
            False,
            "parameters and activations in float16, no loss scaler (no fp32 master weights to unscale into).",
        ),
        ModeSpec(
            "fp8-mixed",
            torch.float32,
            torch.bfloat16,
            False,
            False,
            "Linear matmuls in float8 with per-tensor scaling, the rest bf16 autocast, fp32 weights (cc>=8.9).",
            fp8=True,
        ),
        ModeSpec(
            "int8-qat",
            torch.float32,
            None,
            False,
            False,
            "quantisation-aware training: fp32 weights, int8 fake-quant of conv/linear; converts to int8 kernels.",
            quantization="int8",
        ),
    )
}

#: Canonical names in the order they are listed to users.
CANONICAL: tuple[str, ...] = tuple(MODES)
