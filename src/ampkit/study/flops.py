"""Model FLOPs per step (counted, not estimated) and MFU against a named dense peak.

FLOPs come from ``torch.utils.flop_counter``'s formulas over one forward and backward on a real
training batch: the run's own FLOP-share probe (counted before its first step, so nothing is
built twice and no second model copy raises the arm's peak memory), or where a run has none,
``FlopCounterMode`` over a fresh copy of the task's model. MFU divides achieved FLOP/s
by the dense tensor peak of the dtype the mode computes in, for GPUs whose peak is known.
"""

from __future__ import annotations

from typing import Any

from ..engine import TrainConfig
from ..engine.evaluate import task_loss
from ..hardware.capabilities import DeviceCaps
from ..precision import Precision
from ..tasks import TaskSpec, build_task

#: Dense peaks in TFLOP/s per compute kind, by GPU family (vendor datasheets, no sparsity).
PEAKS_TFLOPS: dict[str, dict[str, float]] = {
    "H100 SXM": {"bf16": 989.0, "fp16": 989.0, "tf32": 495.0, "fp32": 67.0, "fp8": 1979.0},
    "H200 SXM": {"bf16": 989.0, "fp16": 989.0, "tf32": 495.0, "fp32": 67.0, "fp8": 1979.0},
    "A100": {"bf16": 312.0, "fp16": 312.0, "tf32": 156.0, "fp32": 19.5},
}


def gpu_family(caps: DeviceCaps) -> str | None:
    """The :data:`PEAKS_TFLOPS` key for this device, or None (CPUs, PCIe/NVL parts, unknown GPUs)."""
    if not caps.is_cuda:
        return None
    name = caps.name.upper()
    if "PCIE" in name or "NVL" in name:
        return "A100" if "A100" in name else None  # A100 PCIe has the SXM peaks; H100 PCIe/NVL do not
    for family in ("H200", "H100"):
        if family in name:
            return f"{family} SXM"
    return "A100" if "A100" in name else None


def compute_kind(mode: str) -> str | None:
    """What the mode's matmuls run in: bf16, fp16, tf32, fp32 (None for fp64: no peak listed)."""
    return {
        "fp32": "fp32",
        "tf32": "tf32",
        "bf16-mixed": "bf16",
        "bf16-true": "bf16",
        "fp16-mixed": "fp16",
        "fp16-true": "fp16",
        "fp8-mixed": "fp8",
    }.get(mode)


def peak_tflops(mode: str, caps: DeviceCaps) -> tuple[float, str] | tuple[None, str]:
    """``(peak, its name)`` or ``(None, why unavailable)``."""
    family, kind = gpu_family(caps), compute_kind(mode)
    if family is None:
        return None, f"no known peak for {caps.name}"
    if kind is None or kind not in PEAKS_TFLOPS[family]:
        return None, f"no {mode} peak listed for {family}"
    return PEAKS_TFLOPS[family][kind], f"{family} dense {kind} peak {PEAKS_TFLOPS[family][kind]:g} TFLOP/s"


def count_step_flops(config: TrainConfig) -> int:
    """FLOPs of one optimizer step: forward + backward of one micro-batch times ``accumulate``.

    Counted on a freshly built copy of the task (so the measured run's weights, BatchNorm
    statistics and gradients are untouched). The optimizer update itself is not counted.
    """
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    device = torch.device(config.device)
    precision = Precision(config.precision, device, keep_fp32=config.keep_fp32)
    task = build_task(config.task, TaskSpec(config.seed, config.batch_size, device, config.size))
    model = precision.prepare(task.model)
    inputs, targets = task.train_batch(0)
    with precision.scope(), FlopCounterMode(display=False) as counter:
        with precision.autocast():
            outputs = model(precision.cast_inputs(inputs))
        task_loss(task, outputs, targets).backward()
    return int(counter.get_total_flops()) * config.accumulate


PROBE_METHOD = (
    "torch.utils.flop_counter formulas over one forward+backward of micro-batch 0 "
    "(the run's FLOP-share probe before its first step; CPU flash attention and int8 mm included)"
)
FRESH_METHOD = "torch.utils.flop_counter.FlopCounterMode over one forward+backward of a fresh model copy"


def step_flops(config: TrainConfig, numerics: dict[str, Any]) -> tuple[int, str]:
    """``(FLOPs of one optimizer step, how counted)``: the run's probe count times ``accumulate``
    where the run recorded one (FLOPs depend on shapes, not dtypes: a run that fell back to
    another mode counts the same), else :func:`count_step_flops` on a fresh model copy."""
    share = numerics.get("flop_share_initial") or numerics.get("flop_share") or {}
    total = share.get("total_flops")
    if isinstance(total, int) and total > 0:
        return total * config.accumulate, PROBE_METHOD
    return count_step_flops(config), FRESH_METHOD
