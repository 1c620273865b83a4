"""One loss, several optimizers: ``PrecisionOptimizer([opt_a, opt_b], prec)`` against torch's
documented multi-optimizer GradScaler recipe, bit for bit (QA adoption pass, r_two_optimizers.py)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ampkit.optim import PrecisionOptimizer
from ampkit.precision import Precision, PrecisionError

STEPS = 6
INF_STEP = 3  # a step whose loss is inf: both loops skip it and halve the scale


def _nets() -> tuple[nn.Sequential, nn.Linear]:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 16), nn.ReLU()), nn.Linear(16, 2)


def _optimizers(body: nn.Module, head: nn.Module) -> list[torch.optim.Optimizer]:
    return [
        torch.optim.AdamW(body.parameters(), lr=1e-2),
        torch.optim.SGD(head.parameters(), lr=0.1, momentum=0.9),
    ]


def _loss(body: nn.Module, head: nn.Module, step: int, dtype: torch.dtype | None) -> torch.Tensor:
    gen = torch.Generator().manual_seed(step)
    x, y = torch.randn(8, 4, generator=gen), torch.randint(0, 2, (8,), generator=gen)
    with torch.autocast("cpu", dtype=dtype or torch.bfloat16, enabled=dtype is not None):
        out = head(body(x))
    loss = F.cross_entropy(out.float(), y)
    return loss * float("inf") if step == INF_STEP else loss


def _torch_recipe(mode: str, clip: float | None) -> tuple[list[float], list[torch.Tensor], float]:
    """torch.amp docs, "Working with multiple models, losses, and optimizers" (+ "Gradient clipping")."""
    dtype = {"fp16-mixed": torch.float16, "bf16-mixed": torch.bfloat16}[mode]
    body, head = _nets()
    opts = _optimizers(body, head)
    scaler = torch.amp.GradScaler("cpu", init_scale=65536.0, enabled=mode == "fp16-mixed")
    losses = []
    for step in range(STEPS):
        loss = _loss(body, head, step, dtype)
        scaler.scale(loss).backward()
        if mode == "bf16-mixed" and step == INF_STEP:  # no scaler: the plain loop has to skip by hand
            for o in opts:
                o.zero_grad()
            losses.append(loss.item())
            continue
        if clip is not None:
            for o in opts:
                scaler.unscale_(o)
            nn.utils.clip_grad_norm_([*body.parameters(), *head.parameters()], clip)
        for o in opts:
            scaler.step(o)
        scaler.update()
        for o in opts:
            o.zero_grad()
        losses.append(loss.item())
    return losses, [p.detach().clone() for p in (*body.parameters(), *head.parameters())], scaler.get_scale()


def _ampkit(mode: str, clip: float | None) -> tuple[list[float], list[torch.Tensor], PrecisionOptimizer]:
    prec = Precision(mode, "cpu")
    body, head = _nets()
    opt = PrecisionOptimizer(_optimizers(body, head), prec, clip_grad_norm=clip)
    losses, applied = [], []
    for step in range(STEPS):
        loss = _loss(body, head, step, prec.spec.autocast_dtype)
        opt.backward(loss)
        applied.append(opt.step().applied)
        losses.append(loss.item())
    assert applied == [step != INF_STEP for step in range(STEPS)]
    return losses, [p.detach().clone() for p in (*body.parameters(), *head.parameters())], opt


@pytest.mark.parametrize("clip", [None, 0.5])
@pytest.mark.parametrize("mode", ["fp16-mixed", "bf16-mixed"])
def test_two_optimizers_match_torchs_recipe_bit_for_bit(mode: str, clip: float | None) -> None:
    ours, our_weights, opt = _ampkit(mode, clip)
    theirs, their_weights, scale = _torch_recipe(mode, clip)
    assert ours[:INF_STEP] == theirs[:INF_STEP] and ours[INF_STEP + 1 :] == theirs[INF_STEP + 1 :]
    assert all(torch.equal(a, b) for a, b in zip(our_weights, their_weights))
    assert opt.skipped_steps == 1 and opt.steps == STEPS
    if mode == "fp16-mixed":
        assert opt.scaler.get_scale() == scale == 32768.0


def test_one_skip_decision_for_all_optimizers() -> None:
    """torch's recipe lets each optimizer decide alone; here an inf in the head skips the body too."""
    prec = Precision("fp16-mixed", "cpu")
    body, head = _nets()
    opt = PrecisionOptimizer(_optimizers(body, head), prec)
    before = [p.detach().clone() for p in (*body.parameters(), *head.parameters())]
    opt.backward(_loss(body, head, 0, torch.float16))
    head.bias.grad[0] = float("inf")  # type: ignore[index]
    outcome = opt.step()
    assert (outcome.applied, outcome.reason, outcome.next_loss_scale) == (
        False,
        "scaler skipped (inf/NaN)",
        32768.0,
    )
    assert all(torch.equal(a, b) for a, b in zip(before, (*body.parameters(), *head.parameters())))
    opt.backward(_loss(body, head, 1, torch.float16))
    assert opt.step().applied and not torch.equal(before[0], next(body.parameters()))


def test_an_optimizer_without_gradients_is_not_stepped() -> None:
    """A frozen part (no .grad) would make torch's scaler.step raise "No inf checks were recorded"."""
    body, head = _nets()
    extra = nn.Linear(3, 3)
    opts = [*_optimizers(body, head), torch.optim.SGD(extra.parameters(), lr=0.1)]
    opt = PrecisionOptimizer(opts, Precision("fp16-mixed", "cpu"), clip_grad_norm=1.0)
    opt.backward(_loss(body, head, 0, torch.float16))
    opt.unscale_()
    outcome = opt.step()
    assert outcome.applied and outcome.grad_norm is not None and extra.weight.grad is None


def test_accumulation_schedulers_state_and_rebind() -> None:
    prec = Precision("fp16-mixed", "cpu")
    body, head = _nets()
    opts = _optimizers(body, head)
    scheds = [torch.optim.lr_scheduler.StepLR(o, step_size=1, gamma=0.5) for o in opts]
    opt = PrecisionOptimizer(opts, prec, accumulate=2, scheduler=scheds)
    assert opt.optimizers == opts
    with pytest.raises(AttributeError, match=r"wraps 2 optimizers: use opt.optimizers\[i\]"):
        _ = opt.optimizer
    for micro in range(2):
        opt.backward(_loss(body, head, micro, torch.float16))
    assert opt.step().applied
    assert [s.get_last_lr() for s in scheds] == [[5e-3], [0.05]]
    state = opt.state_dict()
    assert len(state["optimizer"]) == 2 and len(state["scheduler"]) == 2

    body2, head2 = _nets()
    opts2 = _optimizers(body2, head2)
    scheds2 = [torch.optim.lr_scheduler.StepLR(o, step_size=1, gamma=0.5) for o in opts2]
    fresh = PrecisionOptimizer(opts2, prec, scheduler=scheds2)
    fresh.load_state_dict(state)
    assert opts2[0].state_dict()["state"][0]["step"] == 1 and scheds2[1].get_last_lr() == [0.05]

    rebuilt = torch.optim.SGD(head.parameters(), lr=0.1)  # the head's optimizer rebuilt; the body's kept
    opt.rebind([opts[0], rebuilt])
    assert (
        opt.optimizers == [opts[0], rebuilt]
        and scheds[1].optimizer is rebuilt
        and scheds[0].optimizer is opts[0]
    )
    assert rebuilt.param_groups[0]["lr"] == 0.05  # continues the schedule
    with pytest.raises(ValueError, match=r"rebind: 1 optimizer\(s\) for a wrapper of 2"):
        opt.rebind(rebuilt)


def test_two_wrappers_on_one_loss_point_at_the_list_form() -> None:
    """The QA script: two wrappers, one backward through the first; the second's error names the fix."""
    prec = Precision("fp16-mixed", "cpu")
    body, head = _nets()
    o_body, o_head = (PrecisionOptimizer(o, prec) for o in _optimizers(body, head))
    o_body.backward(_loss(body, head, 0, torch.float16))
    assert o_body.step().applied
    with pytest.raises(PrecisionError, match=r"another PrecisionOptimizer's backward\(\) made these gradients.*"
                       r"PrecisionOptimizer\(\[opt_a, opt_b\], precision\)"):  # fmt: skip
        o_head.step()
