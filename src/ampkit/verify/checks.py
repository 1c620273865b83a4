"""The three checks ``ampkit verify`` runs per mode, through the public API only.

1. dtypes: after ``prepare``, parameters have the mode's dtype (norm layers fp32 in true-half
   modes) and under ``scope()`` + ``autocast()`` a Linear computes in the mode's dtype. The
   expected dtypes come from the mode's *name* (``bf16-…`` -> bfloat16), not from its
   :class:`ModeSpec`, so a mis-specified mode fails too.
2. scaler: where the mode scales the loss, a planted inf gradient makes the step skip (weights
   unchanged, scale halved) and the next clean step applies; elsewhere the scaler is off.
3. loss: 10 optimizer steps on a tiny fixed regression problem lower the loss.

fp8 modes must also have swapped the Linear for an fp8 one, int8 modes must fake-quantise it.

Shapes are tiny so that fp16 modes finish in well under a second on CPUs that emulate fp16.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from ..optim import PrecisionOptimizer
from ..precision import DTYPES, Precision, dtype_name

FEATURES, HIDDEN, SAMPLES, STEPS = 8, 16, 64, 10


@dataclass(frozen=True)
class Check:
    """The result of one check on one mode."""

    name: str
    """``"dtypes"``, ``"scaler"`` or ``"loss"``."""
    passed: bool | None
    """True/False; None when the check does not apply to the mode (e.g. no scaler)."""
    detail: str
    """What was observed, e.g. ``"bf16/fp32/fp32"`` (compute/params/norm dtypes)."""


def expected_dtypes(mode: str) -> tuple[torch.dtype, torch.dtype]:
    """(Linear output dtype, parameter dtype) a mode's name promises: ``"fp16-true"`` -> (fp16, fp16).

    tf32 and int8-qat compute on fp32 tensors; fp8-mixed's fp8 matmuls hand back bf16 (the
    dtype the rest of the mode autocasts to).
    """
    prefix, _, kind = mode.partition("-")
    compute = torch.bfloat16 if prefix == "fp8" else DTYPES.get(prefix, torch.float32)
    params = compute if kind in ("true", "") else torch.float32
    return compute, params


def _short(dtype: torch.dtype) -> str:
    return next((name for name, d in DTYPES.items() if d == dtype), dtype_name(dtype))


def tiny_model(seed: int = 0) -> nn.Sequential:
    """Linear -> LayerNorm -> ReLU -> Linear, initialised from ``seed``."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(FEATURES, HIDDEN), nn.LayerNorm(HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, 1))


def tiny_data(device: torch.device, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A fixed regression problem: y = x·w + 0.1·noise."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(SAMPLES, FEATURES, generator=gen)
    y = x @ torch.randn(FEATURES, 1, generator=gen) + 0.1 * torch.randn(SAMPLES, 1, generator=gen)
    return x.to(device), y.to(device)


def _loss(precision: Precision, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    with precision.autocast():
        out = model(precision.cast_inputs(x))
    # The loss itself in fp32, as a training loop should compute it.
    return nn.functional.mse_loss(out.float(), y.float())


def _optimizer(precision: Precision, model: nn.Module) -> PrecisionOptimizer:
    # SGD, not Adam: Adam's eps (1e-8) underflows to 0 in fp16-true and would make this check flaky.
    return PrecisionOptimizer(
        torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9), precision, model=model
    )


def _first(model: nn.Module, kind: type[nn.Module]) -> nn.Module:
    # By type, not position: fp8 modes swap Linear for a subclass, int8-qat returns a traced copy.
    return next(m for m in model.modules() if isinstance(m, kind))


def _weight(module: nn.Module) -> torch.Tensor:
    weight = module.weight
    assert isinstance(weight, torch.Tensor)
    return weight


def _layer_kind_ok(mode: str, linear: nn.Module) -> bool:
    """fp8 modes must have swapped the Linear for an fp8 one; int8 modes must fake-quantise it."""
    if mode.startswith("fp8"):
        return type(linear).__name__.startswith("Float8")
    if mode.startswith("int8"):
        return hasattr(linear, "weight_fake_quant")
    return True


def check_dtypes(precision: Precision) -> Check:
    """Parameter and compute dtypes match what the mode's name promises."""
    want_compute, want_params = expected_dtypes(precision.name)
    model = precision.prepare(tiny_model())
    linear, layer_norm = _first(model, nn.Linear), _first(model, nn.LayerNorm)
    seen: dict[str, torch.dtype] = {}

    def record(_module: nn.Module, _args: object, out: torch.Tensor) -> None:
        seen.setdefault("linear", out.dtype)

    linear.register_forward_hook(record)
    x, _ = tiny_data(precision.device)
    with precision.scope(), precision.autocast():
        model(precision.cast_inputs(x))
    params, norm = _weight(linear).dtype, _weight(layer_norm).dtype
    want_norm = torch.float32 if want_params in (torch.bfloat16, torch.float16) else want_params
    kind_ok = _layer_kind_ok(precision.name, linear)
    ok = seen["linear"] == want_compute and params == want_params and norm == want_norm and kind_ok
    detail = f"{_short(seen['linear'])}/{_short(params)}/{_short(norm)}"
    if not ok:
        detail += f", expected {_short(want_compute)}/{_short(want_params)}/{_short(want_norm)}"
    if not kind_ok:
        detail += f"; Linear not converted ({type(linear).__name__})"
    return Check("dtypes", ok, detail)


def check_scaler(precision: Precision) -> Check:
    """A planted inf gradient is skipped (weights kept, scale halved); the next clean step applies."""
    model = precision.prepare(tiny_model())
    x, y = tiny_data(precision.device)
    with precision.scope():
        opt = _optimizer(precision, model)
        if not precision.spec.grad_scaler:
            enabled = opt.scaler.is_enabled()
            return Check("scaler", False if enabled else None, "ON, not wanted" if enabled else "off")
        before = [p.detach().clone() for p in model.parameters()]
        opt.backward(_loss(precision, model, x, y))
        first = next(p for p in model.parameters() if p.grad is not None)
        assert first.grad is not None
        first.grad.view(-1)[0] = float("inf")
        bad = opt.step()
        kept = all(torch.equal(b, p.detach()) for b, p in zip(before, model.parameters()))
        opt.backward(_loss(precision, model, x, y))
        good = opt.step()
    moved = any(not torch.equal(b, p.detach()) for b, p in zip(before, model.parameters()))
    halved = (
        bad.loss_scale is not None
        and bad.next_loss_scale is not None
        and bad.next_loss_scale < bad.loss_scale
    )
    ok = (not bad.applied) and kept and halved and good.applied and moved
    detail = (
        f"inf {'skipped' if not bad.applied else 'APPLIED'}{'' if kept else ' (weights changed)'}, "
        f"scale {bad.loss_scale:g}->{bad.next_loss_scale:g}, next {'applied' if good.applied and moved else 'NOT'}"
    )
    return Check("scaler", ok, detail)


def check_loss(precision: Precision, steps: int = STEPS) -> Check:
    """``steps`` optimizer steps lower the loss, and every loss is finite."""
    model = precision.prepare(tiny_model())
    x, y = tiny_data(precision.device)
    losses: list[float] = []
    with precision.scope():
        opt = _optimizer(precision, model)
        for _ in range(steps):
            loss = _loss(precision, model, x, y)
            losses.append(float(loss.detach()))
            opt.backward(loss)
            opt.step()
        losses.append(float(_loss(precision, model, x, y).detach()))
    finite = all(torch.isfinite(torch.tensor(losses)))
    ok = bool(finite and losses[-1] < losses[0])
    skipped = f" ({opt.skipped_steps} skipped)" if opt.skipped_steps else ""
    return Check("loss", ok, f"{losses[0]:.3g} -> {losses[-1]:.3g}{skipped}")


#: The checks in the order they run and are shown.
CHECKS: tuple[Callable[[Precision], Check], ...] = (check_dtypes, check_scaler, check_loss)
