"""Adopting PrecisionOptimizer in an existing script: fp16-true clipping, unfreezing, old checkpoints,
a half-finished port. Real tensors, tiny models, compared with plain PyTorch where there is one."""

from __future__ import annotations

import math
import warnings
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ampkit.errors import UsageError
from ampkit.optim import PrecisionOptimizer
from ampkit.precision import Precision, PrecisionError, PrecisionWarning


# -- 1. fp16-true clipping: a finite gradient whose 2-norm passes 65504 ---------------------------------
def _big_grad_layer() -> tuple[nn.Linear, PrecisionOptimizer]:
    """A float16 (4, 8) layer whose gradient entries are 30000: finite, but the 2-norm is 169706."""
    prec = Precision("fp16-true", "cpu")
    torch.manual_seed(0)
    layer = prec.prepare(nn.Linear(8, 4, bias=False))
    assert isinstance(layer, nn.Linear) and layer.weight.dtype == torch.float16
    opt = PrecisionOptimizer(torch.optim.SGD(layer.parameters(), lr=0.1), prec, clip_grad_norm=1.0)
    x = torch.full((1, 8), 100.0, dtype=torch.float16)
    opt.backward((layer(x).float() * 300.0).sum())
    return layer, opt


def test_fp16_true_clip_of_a_norm_past_65504_matches_torch_on_float32_copies() -> None:
    layer, opt = _big_grad_layer()
    grad = layer.weight.grad
    assert grad is not None and torch.isfinite(grad).all()
    assert torch.isinf(torch.nn.utils.get_total_norm([grad]))  # torch's own fp16 norm overflows
    before = layer.weight.detach().clone()
    reference = nn.Parameter(before.float())
    reference.grad = grad.float()
    torch_norm = torch.nn.utils.clip_grad_norm_([reference], 1.0)  # on float32 copies
    expected = torch.empty_like(before)  # the fp16 SGD update with torch's clipped gradient
    expected.copy_(before).add_(reference.grad.to(torch.float16), alpha=-0.1)
    outcome = opt.step()
    assert outcome.applied and outcome.grad_norm == pytest.approx(float(torch_norm), rel=1e-6)
    assert math.isfinite(outcome.grad_norm) and outcome.grad_norm > 65504
    assert torch.equal(layer.weight.detach(), expected)
    assert (layer.weight.detach() != before).any()  # the update was not zeroed


def test_fp16_true_tracked_norm_is_a_float32_figure_and_inf_is_still_skipped() -> None:
    layer, opt = _big_grad_layer()
    opt.clip_grad_norm = None
    opt.track_grad_norm = True
    outcome = opt.step()
    assert outcome.applied and outcome.grad_norm == pytest.approx(30000 * math.sqrt(32), rel=1e-3)
    opt.backward((layer(torch.full((1, 8), math.inf, dtype=torch.float16)).float()).sum())
    before = layer.weight.detach().clone()
    skipped = opt.step()  # a real inf: still skipped, not mistaken for an overflowing norm
    assert not skipped.applied and skipped.reason == "non-finite gradients"
    assert torch.equal(layer.weight.detach(), before)


# -- 2. fp16-true: param groups added later get a float16-safe eps ---------------------------------------
def _unfreezing() -> tuple[nn.Sequential, PrecisionOptimizer, torch.optim.Adam, Precision]:
    prec = Precision("fp16-true", "cpu")
    torch.manual_seed(0)
    model = prec.prepare(nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2)))
    assert isinstance(model, nn.Sequential)
    model[0].requires_grad_(False)
    adam = torch.optim.Adam(model[2].parameters(), lr=1e-2, eps=1e-8)
    with pytest.warns(PrecisionWarning, match="eps 1e-08 underflows"):
        opt = PrecisionOptimizer(adam, prec)
    return model, opt, adam, prec


def _train(model: nn.Sequential, opt: PrecisionOptimizer, prec: Precision, steps: int) -> None:
    gen = torch.Generator().manual_seed(3)
    for _ in range(steps):
        x = torch.randn(16, 4, generator=gen)
        x[:, 0] = 0.0  # the first layer's weight column 0 gets a gradient of exactly 0: 0/(0+eps)
        y = torch.randint(0, 2, (16,), generator=gen)
        opt.backward(F.cross_entropy(model(prec.cast_inputs(x)).float(), y))
        assert opt.step().applied


def test_a_group_added_to_the_wrapped_optimizer_takes_the_raised_default_eps() -> None:
    model, opt, adam, prec = _unfreezing()
    assert adam.defaults["eps"] == 1e-4  # raised with the groups: a later group takes it from here
    _train(model, opt, prec, 2)
    model[0].requires_grad_(True)
    adam.add_param_group({"params": model[0].parameters(), "lr": 1e-3})  # the timm/fastai line
    _train(model, opt, prec, 3)
    assert [g["eps"] for g in adam.param_groups] == [1e-4, 1e-4]
    assert all(torch.isfinite(p).all() for p in model.parameters())


@pytest.mark.parametrize("where", ["wrapped", "wrapper"])
def test_a_later_group_with_its_own_tiny_eps_is_raised_with_a_warning_at_the_users_line(where: str) -> None:
    model, opt, adam, prec = _unfreezing()
    model[0].requires_grad_(True)
    group = {"params": model[0].parameters(), "lr": 1e-3, "eps": 1e-8}
    if where == "wrapper":
        with pytest.warns(PrecisionWarning, match="eps 1e-08 underflows") as caught:
            opt.add_param_group(group)
    else:
        adam.add_param_group(group)  # checked at the next step, before any update
        gen = torch.Generator().manual_seed(3)
        x, y = torch.randn(16, 4, generator=gen), torch.randint(0, 2, (16,), generator=gen)
        opt.backward(F.cross_entropy(model(prec.cast_inputs(x)).float(), y))
        with pytest.warns(PrecisionWarning, match="eps 1e-08 underflows") as caught:
            opt.step()
    assert [w.filename for w in caught if "eps" in str(w.message)] == [__file__]
    _train(model, opt, prec, 3)
    assert adam.param_groups[1]["eps"] == 1e-4
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_a_float16_group_under_a_loss_scaler_is_refused_and_not_added() -> None:
    model = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 2).half())
    sgd = torch.optim.SGD(model[0].parameters(), lr=0.1)
    opt = PrecisionOptimizer(sgd, Precision("fp16-mixed", "cpu"))
    with pytest.raises(PrecisionError, match="float16 under a GradScaler"):
        opt.add_param_group({"params": model[1].parameters()})
    assert len(sgd.param_groups) == 1


# -- 4. resuming from a checkpoint saved before the port -------------------------------------------------
def _run(model: nn.Module, opt: Any, steps: range) -> None:
    for step in steps:
        gen = torch.Generator().manual_seed(step)
        x, y = torch.randn(16, 4, generator=gen), torch.randint(0, 2, (16,), generator=gen)
        loss = F.cross_entropy(model(x), y)
        if isinstance(opt, PrecisionOptimizer):
            opt.backward(loss)
        else:
            loss.backward()
        opt.step()
        opt.zero_grad()


def test_a_plain_torch_optimizer_checkpoint_resumes_with_one_warning() -> None:
    torch.manual_seed(0)
    whole = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    old = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    old.load_state_dict(whole.state_dict())
    _run(whole, torch.optim.AdamW(whole.parameters(), lr=1e-2), range(6))
    before_port = torch.optim.AdamW(old.parameters(), lr=1e-2)
    _run(old, before_port, range(3))
    checkpoint = {"model": old.state_dict(), "optimizer": before_port.state_dict()}  # the old script's save
    resumed = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    resumed.load_state_dict(checkpoint["model"])
    opt = PrecisionOptimizer(torch.optim.AdamW(resumed.parameters(), lr=1e-2), "fp32")
    with pytest.warns(UserWarning, match="a plain torch optimizer state_dict") as caught:
        opt.load_state_dict(checkpoint["optimizer"])
    assert caught[0].filename == __file__
    _run(resumed, opt, range(3, 6))
    for p, q in zip(resumed.parameters(), whole.parameters()):
        assert torch.equal(p, q)  # Adam's moments and step count came back: the run continues exactly


BAD_STATES: list[tuple[str, Any, str]] = [
    ("none", None, "got a NoneType; valid: what opt.state_dict() returned"),
    ("string", "ckpt.pt", "got a str; valid"),
    ("whole-checkpoint", {"model": {}, "epoch": 3}, "got a dict with keys ['epoch', 'model']; valid"),
    ("empty-dict", {}, "got a dict with keys []; valid"),
    ("list-of-ints", [1, 2], "got a list; valid"),
]


@pytest.mark.parametrize(("state", "needle"), [pytest.param(*row[1:], id=row[0]) for row in BAD_STATES])
def test_what_is_not_a_state_dict_is_one_usage_error(state: Any, needle: str) -> None:
    model = nn.Linear(4, 2)
    opt = PrecisionOptimizer(torch.optim.AdamW(model.parameters(), lr=1e-2), "fp32")
    groups = [dict(g) for g in opt.param_groups]
    with pytest.raises(UsageError) as caught:
        opt.load_state_dict(state)
    message = str(caught.value)
    assert message.startswith("PrecisionOptimizer.load_state_dict: ") and needle in message
    assert "\n" not in message and "torch optimizer's state_dict() (keys state, param_groups)" in message
    assert [dict(g) for g in opt.param_groups] == groups and opt.steps == 0


# -- 5. a half-finished port: loss.backward() left in place ---------------------------------------------
def test_loss_backward_left_in_place_is_warned_once_at_the_users_line() -> None:
    prec = Precision("fp16-mixed", "cpu")
    model = nn.Linear(4, 1)
    opt = PrecisionOptimizer(torch.optim.SGD(model.parameters(), lr=0.1), prec, accumulate=4)
    with pytest.warns(UserWarning) as caught:
        for _ in range(8):
            with prec.autocast():
                loss = F.mse_loss(model(torch.randn(8, 4)).float(), torch.ones(8, 1))
            loss.backward()
            if opt.ready:  # never True: nothing counted these micro-batches
                opt.step()
    ported = [w for w in caught if "opt.backward() was never called" in str(w.message)]
    assert len(ported) == 1 and ported[0].filename == __file__
    assert "call opt.backward(loss) instead" in str(ported[0].message) and opt.steps == 0


def test_a_plain_backward_before_step_warns_once_and_the_port_costs_nothing_after(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    model = nn.Linear(4, 1)
    opt = PrecisionOptimizer(torch.optim.SGD(model.parameters(), lr=0.1), "fp32")
    F.mse_loss(model(torch.randn(8, 4)), torch.ones(8, 1)).backward()
    with pytest.warns(UserWarning, match=r"opt\.step\(\): parameters have gradients but opt\.backward"):
        assert opt.step().applied  # without a scaler the step itself is right
    checks: list[str] = []
    real = PrecisionOptimizer._check_port
    monkeypatch.setattr(
        PrecisionOptimizer, "_check_port", lambda self, call: checks.append(call) or real(self, call)
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for _ in range(3):  # warned already: checked no more
            F.mse_loss(model(torch.randn(8, 4)), torch.ones(8, 1)).backward()
            opt.step()
        ported = PrecisionOptimizer(torch.optim.SGD(model.parameters(), lr=0.1), "fp32", accumulate=2)
        for _ in range(4):  # a finished port: never checked (opt.backward() came first)
            ported.backward(F.mse_loss(model(torch.randn(8, 4)), torch.ones(8, 1)))
            if ported.ready:
                assert ported.step().applied
    assert checks == [] and ported.steps == 2
