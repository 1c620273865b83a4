"""Telemetry that proves a mode does its work: low-precision FLOP share, loss scale, skipped steps.

The FLOP share is counted with a ``TorchDispatchMode`` over one forward/backward: every
mm/addmm/bmm/convolution/attention op below autocast is seen with the dtype it actually ran in,
and its FLOPs (``torch.utils.flop_counter``'s formulas) are summed per dtype. A bf16-mixed run
whose matmuls show up as float32 is not saving anything, whatever its log line says.
"""

from __future__ import annotations

import contextlib
import statistics
from collections import defaultdict
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry

from ..precision import dtype_name, fp32_region
from ..precision.compile import compile_state

if TYPE_CHECKING:
    from ..engine.records import StepRecord
    from ..engine.setup import RunSetup

_aten = torch.ops.aten


def _formulas() -> dict[Any, Any]:
    """The matmul/conv/attention subset of torch's FLOP formulas, plus CPU attention and int8 mm."""
    formulas = {
        packet: formula
        for packet, formula in flop_registry.items()
        if isinstance(packet, torch._ops.OpOverloadPacket)
    }
    extra = {
        "_scaled_dot_product_flash_attention_for_cpu": _aten._scaled_dot_product_flash_attention,
        "_scaled_dot_product_flash_attention_for_cpu_backward": _aten._scaled_dot_product_flash_attention_backward,
        "_int_mm": _aten.mm,
    }
    for name, like in extra.items():
        if hasattr(_aten, name) and like in flop_registry:
            formulas[getattr(_aten, name)] = flop_registry[like]
    return formulas


_FORMULAS = _formulas()


def _input_dtype(args: Sequence[Any]) -> torch.dtype | None:
    """dtype of the first matrix-shaped tensor argument (skips addmm's bias)."""
    for arg in args:
        if isinstance(arg, torch.Tensor) and arg.dim() >= 2:
            return arg.dtype
    return None


def is_low_precision(dtype: torch.dtype) -> bool:
    """Narrower than float32: fp16, bf16, fp8, int8."""
    return dtype != torch.bool and dtype.itemsize < 4


class DtypeFlopCounter(TorchDispatchMode):
    """``with DtypeFlopCounter() as c: ...`` then ``c.flops`` = {dtype name: FLOPs}.

    It only observes: every op runs exactly as without it (no decomposition), so results are
    bit-identical.
    """

    def __init__(self) -> None:
        super().__init__()
        self.flops: dict[str, int] = defaultdict(int)
        self.low_flops = 0

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        formula = _FORMULAS.get(getattr(func, "_overloadpacket", None))
        if formula is not None:
            dtype = _input_dtype(args)
            if dtype is not None:
                count = int(formula(*args, **kwargs, out_val=out))
                self.flops[dtype_name(dtype)] += count
                if is_low_precision(dtype):
                    self.low_flops += count
        return out

    def summary(self) -> dict[str, Any]:
        """``{"share": low/total, "low_precision_flops", "total_flops", "by_dtype"}``."""
        total = sum(self.flops.values())
        return {
            "share": self.low_flops / total if total else 0.0,
            "low_precision_flops": self.low_flops,
            "total_flops": total,
            "by_dtype": dict(sorted(self.flops.items())),
        }


def low_precision_flop_share(run: RunSetup, batch: int = 0) -> dict[str, Any]:
    """Share of matmul/conv/attention FLOPs of one forward+backward that ran below float32.

    Runs micro-batch ``batch`` of ``run.task`` under ``run.precision`` without an optimizer step
    and restores what it touched (buffers such as BatchNorm statistics, gradients, RNG), so a
    training run measured before its first step stays bit-identical. Returns
    :meth:`DtypeFlopCounter.summary` plus ``"mode"``.
    """
    model, precision, task = run.model, run.precision, run.task
    buffers = [(b, b.detach().clone()) for b in model.buffers()]
    params = [p for p in model.parameters() if p.requires_grad]
    grads = [p.grad for p in params]
    no_sync = getattr(model, "no_sync", None)  # DDP: do not all-reduce the probe's gradients
    devices = [precision.device] if precision.device.type == "cuda" else []
    counter = DtypeFlopCounter()
    try:
        with (
            torch.random.fork_rng(devices=devices),
            # a compiled model: the probe runs it eagerly and compiles nothing (dynamo loaded only then)
            torch.compiler.set_stance("force_eager") if compile_state(model) else contextlib.nullcontext(),
            precision.scope(),
            no_sync() if callable(no_sync) else contextlib.nullcontext(),
        ):
            inputs, targets = task.train_batch(batch)
            with counter:
                with precision.autocast():
                    outputs = model(precision.cast_inputs(inputs))
                with fp32_region():
                    loss = task.loss_fn(outputs.float(), targets)
                loss.backward()
    finally:
        with torch.no_grad():
            for buffer, saved in buffers:
                buffer.copy_(saved)
        for param, grad in zip(params, grads, strict=True):
            param.grad = grad
    return {"mode": precision.name, **counter.summary()}


def step_telemetry(history: Sequence[StepRecord]) -> dict[str, Any]:
    """Loss scale, skipped-step rate and grad norms (before and after unscaling) over a run."""
    if not history:
        return {"steps": 0}
    scales = [r.loss_scale for r in history if r.loss_scale is not None]
    finite = [r for r in history if r.applied and r.grad_norm is not None and r.grad_norm == r.grad_norm]
    after = [r.grad_norm for r in finite if r.grad_norm is not None]
    before = [r.grad_norm * r.loss_scale for r in finite if r.grad_norm is not None and r.loss_scale]
    skipped = sum(not r.applied for r in history)
    return {
        "steps": len(history),
        "skipped_steps": skipped,
        "skipped_step_rate": skipped / len(history),
        "loss_scale_first": scales[0] if scales else None,
        "loss_scale_last": scales[-1] if scales else None,
        "loss_scale_min": min(scales) if scales else None,
        "grad_norm_scaled_median": statistics.median(before) if before else None,
        "grad_norm_unscaled_median": statistics.median(after) if after else None,
    }


def describe_telemetry(numerics: dict[str, Any]) -> str:
    """One log line from ``RunResult.numerics``."""
    parts = []
    share, initial = numerics.get("flop_share"), numerics.get("flop_share_initial")
    if share:
        dtypes = "+".join(share["by_dtype"]) or "none"
        text = f"low-precision FLOPs {100 * share['share']:.1f}% ({dtypes})"
        if initial:  # after a fallback: the share of the mode that ran at the end, and the first mode's
            text += f" in {share['mode']} ({100 * initial['share']:.1f}% in {initial['mode']} before the fallback)"
        parts.append(text)
    steps = numerics.get("steps")
    if steps:
        parts.append(f"skipped {numerics['skipped_steps']}/{steps} steps")
    if numerics.get("loss_scale_first") is not None:
        final = numerics.get("loss_scale_final", numerics["loss_scale_last"])
        first = numerics["loss_scale_first"]
        if final is not None:
            parts.append(f"loss scale {first:g} -> {final:g} after the last update")
        else:
            parts.append(f"loss scale {first:g} at the start, none at the end ({numerics.get('mode_final')})")
    for key, label in (("grad_norm_scaled_median", "scaled"), ("grad_norm_unscaled_median", "unscaled")):
        if numerics.get(key) is not None:
            parts.append(f"median grad norm {label} {numerics[key]:.4g}")
    return "ampkit: numerics: " + ", ".join(parts)
