"""bf16 parameter updates that do not get lost to rounding: Kahan compensation or stochastic rounding.

In ``bf16-true`` the parameters themselves are bfloat16 (8 mantissa bits). An update smaller
than half a unit in the last place of a weight (``|lr * update| < |w| * 2**-9``) rounds back to
the old weight and is lost, so small learning rates, late training and large weights stall
where fp32 master weights (``bf16-mixed``) keep learning. Two remedies, both without an fp32
copy of the weights:

- ``kahan``: a bf16 compensation buffer per parameter carries the rounding error of each
  update into the next one (compensated summation), so ``w + c`` tracks the fp32 trajectory;
  +2 bytes per parameter.
- ``stochastic``: round the fp32 result up or down at random with probability proportional to
  the distance, so updates are unbiased in expectation; no extra memory.

:class:`Bf16AdamW` is AdamW with the update computed in fp32 and applied with one of these
(``"plain"`` rounds to nearest, like ``torch.optim.AdamW`` on bf16 parameters).
:func:`apply_update_` is the building block for other optimizers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Literal

import torch

from .precision import PrecisionError

UpdateMethod = Literal["plain", "kahan", "stochastic"]
#: The accepted values of ``--bf16-update`` / ``TrainConfig.bf16_update``.
UPDATE_METHODS: tuple[str, ...] = ("plain", "kahan", "stochastic")


def check_method(method: str) -> UpdateMethod:
    """``method`` if it is one of :data:`UPDATE_METHODS`; else :class:`PrecisionError`."""
    if method not in UPDATE_METHODS:
        raise PrecisionError(f"unknown bf16 update {method!r}; valid: {', '.join(UPDATE_METHODS)}")
    return method  # type: ignore[return-value]


def round_stochastic(x: torch.Tensor, dtype: torch.dtype = torch.bfloat16) -> torch.Tensor:
    """fp32 ``x`` rounded to bf16 up or down at random, with probability proportional to the distance.

    bf16 is the top 16 bits of fp32: adding a uniform random 16-bit integer to the bit pattern
    and truncating the low half rounds up exactly with probability (low bits) / 2**16. Uses the
    global RNG of ``x``'s device (captured by checkpoints, so resumed runs continue the stream).
    """
    if dtype != torch.bfloat16:
        return x.to(dtype)
    bits = x.detach().to(torch.float32).contiguous().view(torch.int32)
    noise = torch.randint(0, 1 << 16, bits.shape, device=bits.device, dtype=torch.int32)
    rounded = (bits + noise) & -65536  # clear the 16 bits bf16 drops; exact conversion below
    # Inf/NaN and values whose carry would overflow the exponent keep round-to-nearest.
    out = rounded.view(torch.float32)
    return torch.where(torch.isfinite(out), out, x.float()).to(dtype)


def apply_update_(
    param: torch.Tensor,
    update: torch.Tensor,
    method: UpdateMethod,
    compensation: torch.Tensor | None = None,
) -> None:
    """``param += update`` in place, with ``update`` in fp32 and ``param`` in any dtype.

    ``kahan`` needs ``compensation`` (same shape and dtype as ``param``, zero at start), which
    it updates in place. For fp32/fp64 parameters every method is plain addition.
    """
    if param.dtype in (torch.float32, torch.float64) or method == "plain":
        param.copy_((param.float() + update).to(param.dtype))
        return
    if method == "stochastic":
        param.copy_(round_stochastic(param.float() + update, param.dtype))
        return
    if compensation is None:
        raise PrecisionError(
            "kahan update needs a compensation buffer; create it with torch.zeros_like(param)"
        )
    old = param.float()
    wanted = update + compensation.float()  # this step's update plus what earlier steps lost
    param.copy_((old + wanted).to(param.dtype))
    compensation.copy_((wanted - (param.float() - old)).to(compensation.dtype))


class Bf16AdamW(torch.optim.Optimizer):
    """AdamW for low-precision parameters: fp32 arithmetic, state in the parameters' dtype,
    and the update applied with ``update="plain" | "kahan" | "stochastic"``.

    A drop-in for ``torch.optim.AdamW`` in a user's loop over bf16 parameters
    (``Bf16AdamW(model.parameters(), lr=1e-3, update="kahan")``). ``plain`` matches AdamW
    on bf16 parameters up to the fp32 arithmetic inside the step.
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.01,
        *,
        update: str = "kahan",
    ):
        if lr < 0 or eps < 0 or weight_decay < 0 or not all(0 <= b < 1 for b in betas):
            raise PrecisionError(
                f"Bf16AdamW(lr={lr}, betas={betas}, eps={eps}, weight_decay={weight_decay}): "
                "lr, eps, weight_decay >= 0 and 0 <= betas < 1"
            )
        self.update = check_method(update)
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay})

    def _state_for(self, p: torch.Tensor) -> dict[str, Any]:
        state = self.state[p]
        if not state:
            state["step"] = 0
            state["exp_avg"] = torch.zeros_like(p)
            state["exp_avg_sq"] = torch.zeros_like(p)
            if self.update == "kahan":
                state["compensation"] = torch.zeros_like(p)
        return state

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        """One AdamW step (decoupled weight decay), computed in fp32 for every parameter."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, (beta1, beta2), eps, decay = group["lr"], group["betas"], group["eps"], group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self._state_for(p)
                state["step"] += 1
                t = state["step"]
                grad = p.grad.float()
                exp_avg = state["exp_avg"].float().lerp_(grad, 1 - beta1)
                exp_avg_sq = state["exp_avg_sq"].float().mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
                state["exp_avg"].copy_(exp_avg)
                state["exp_avg_sq"].copy_(exp_avg_sq)
                denom = (exp_avg_sq / (1 - beta2**t)).sqrt_().add_(eps)
                step = exp_avg / (1 - beta1**t) / denom
                update = step.add_(p.float(), alpha=decay).mul_(-lr)
                apply_update_(p, update, self.update, state.get("compensation"))
        return loss


def bf16_adamw(params: list[torch.nn.Parameter], method: str, **kw: Any) -> Bf16AdamW:
    """:class:`Bf16AdamW` for the engine's ``bf16_update``; an error when no parameter is bf16."""
    if not any(p.dtype == torch.bfloat16 for p in params):
        raise PrecisionError(
            f"--bf16-update {method} needs bf16 parameters (--precision bf16-true); "
            "this mode keeps fp32 weights, which need no compensation"
        )
    return Bf16AdamW(params, update=method, **kw)
