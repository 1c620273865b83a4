"""PrecisionOptimizer for scripts that look at, lose or rebuild their gradients (issue 9):
``unscale_()``, steps without gradients, non-finite gradients by default, ``rebind()``."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ampkit.optim import PrecisionOptimizer
from ampkit.precision import Precision, PrecisionError


def _tiny(dtype: torch.dtype = torch.float32) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2)).to(dtype)


def _batch() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    return torch.randn(16, 4, generator=gen), torch.randint(0, 2, (16,), generator=gen)


def _backward(opt: PrecisionOptimizer, model: nn.Module) -> None:
    x, y = _batch()
    prec = opt.precision
    with prec.autocast():
        out = model(prec.cast_inputs(x))
    opt.backward(F.cross_entropy(out.float(), y))


def _reference_grads() -> list[torch.Tensor]:
    model = _tiny()
    x, y = _batch()
    F.cross_entropy(model(x), y).backward()
    return [p.grad.clone() for p in model.parameters()]  # type: ignore[union-attr]


def _norm(tensors: list[torch.Tensor]) -> float:
    return float(torch.linalg.vector_norm(torch.stack([t.norm() for t in tensors])))


# -- unscale_() ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("by_hand", [False, True])
def test_unscale_gives_true_gradients_and_step_clips_once(by_hand: bool) -> None:
    reference = _reference_grads()
    model = _tiny()
    prec = Precision("fp16-mixed", "cpu")
    true_norm = _norm(reference)
    max_norm = true_norm / 10  # clipping bites; a second unscale (norm / 65536) would not be clipped
    opt = PrecisionOptimizer(torch.optim.SGD(model.parameters(), lr=1.0), prec, clip_grad_norm=max_norm)
    assert opt.scaler.get_scale() == 65536.0
    _backward(opt, model)
    scaled = [p.grad.clone() for p in model.parameters()]  # type: ignore[union-attr]
    for s, r in zip(scaled, reference):
        torch.testing.assert_close(s / 65536, r, rtol=1e-2, atol=1e-4)  # still multiplied by the scale
    if by_hand:
        opt.scaler.unscale_(opt.optimizer)  # what scripts reach for; step() must not unscale again
    opt.unscale_()
    true = [p.grad.clone() for p in model.parameters()]  # type: ignore[union-attr]
    for t, r in zip(true, reference):
        torch.testing.assert_close(t, r, rtol=1e-2, atol=1e-4)  # equal to fp32 within fp16 rounding
    opt.unscale_()  # idempotent until the next step
    assert all(torch.equal(t, p.grad) for t, p in zip(true, model.parameters()))
    before = [p.detach().clone() for p in model.parameters()]
    outcome = opt.step()
    assert outcome.applied and outcome.reason is None
    assert outcome.grad_norm == pytest.approx(_norm(true), rel=1e-6)  # the norm of the unscaled grads
    update = [b - p.detach() for b, p in zip(before, model.parameters())]  # lr 1: the applied gradient
    assert _norm(update) == pytest.approx(max_norm, rel=1e-4)  # clipped exactly once
    _backward(opt, model)  # the next step unscales afresh
    opt.unscale_()
    assert opt.step().applied


def test_unscale_is_a_no_op_without_a_scaler_and_guards_its_order() -> None:
    model = _tiny()
    opt = PrecisionOptimizer(
        torch.optim.SGD(model.parameters(), lr=0.1), Precision("bf16-mixed"), accumulate=2
    )
    _backward(opt, model)
    with pytest.raises(PrecisionError, match=r"unscale_\(\) after 1 of 2 micro-batches"):
        opt.unscale_()
    _backward(opt, model)
    grads = [p.grad.clone() for p in model.parameters()]  # type: ignore[union-attr]
    opt.unscale_()
    assert all(torch.equal(g, p.grad) for g, p in zip(grads, model.parameters()))
    with pytest.raises(PrecisionError, match=r"backward\(\) after opt.unscale_\(\)"):
        _backward(opt, model)
    assert opt.step().applied


# -- steps without gradients ---------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["fp32", "bf16-mixed", "fp16-mixed", "bf16-true"])
def test_a_step_without_gradients_is_reported_not_raised(mode: str) -> None:
    prec = Precision(mode, "cpu")
    model = prec.prepare(_tiny())
    sgd = torch.optim.SGD(model.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.StepLR(sgd, step_size=1, gamma=0.5)
    opt = PrecisionOptimizer(sgd, prec, scheduler=sched, clip_grad_norm=1.0)
    before = [p.detach().clone() for p in model.parameters()]
    outcome = opt.step()  # nothing was backpropagated at all
    assert (outcome.applied, outcome.reason, opt.skipped_steps, opt.steps) == (False, "no gradients", 1, 1)
    # a backward that reaches none of the optimizer's parameters (torch: "No inf checks were recorded")
    opt.backward((torch.ones(3, requires_grad=True) * 2).sum())
    outcome = opt.step()
    assert (outcome.applied, outcome.reason, opt.skipped_steps) == (False, "no gradients", 2)
    assert outcome.next_loss_scale == outcome.loss_scale  # the scale is untouched
    assert sched.get_last_lr() == [0.1]  # scheduler held
    assert all(torch.equal(b, p) for b, p in zip(before, model.parameters()))
    # only some parameters with a gradient: those are updated, the others simply are not
    y = _batch()[1]
    with prec.autocast():
        out = model[2](torch.relu(prec.cast_inputs(torch.randn(16, 8))))
    opt.backward(F.cross_entropy(out.float(), y))
    outcome = opt.step()
    assert outcome.applied and outcome.reason is None and sched.get_last_lr() == [0.05]
    assert torch.equal(before[0], model[0].weight) and not torch.equal(before[2], model[2].weight)


def test_gradients_dropped_after_unscale_then_next_step_works() -> None:
    """Splatting order: backward, unscale_ (densification stats), prune (params replaced in place), step."""
    model = _tiny()
    adam = torch.optim.Adam(model.parameters(), lr=1e-2)
    opt = PrecisionOptimizer(adam, Precision("fp16-mixed"))
    _backward(opt, model)
    opt.unscale_()
    for group in adam.param_groups:  # replace every parameter by a fresh one without a gradient
        group["params"] = [nn.Parameter(p.detach().clone()) for p in group["params"]]
    outcome = opt.step()
    assert (outcome.applied, outcome.reason) == (False, "no gradients")
    assert outcome.next_loss_scale == 65536.0  # the recorded (finite) unscale settled the scaler
    params = adam.param_groups[0]["params"]
    out = F.linear(F.relu(F.linear(_batch()[0], params[0], params[1])), params[2], params[3])
    opt.backward(F.cross_entropy(out, _batch()[1]))
    assert opt.step().applied  # no "unscale_() has already been called"


# -- non-finite gradients never reach the weights -------------------------------------------------------
@pytest.mark.parametrize("track", [False, True])
@pytest.mark.parametrize(
    ("mode", "reason"),
    [
        ("fp32", "non-finite gradients"),
        ("bf16-mixed", "non-finite gradients"),
        ("bf16-true", "non-finite gradients"),
        ("fp16-mixed", "scaler skipped (inf/NaN)"),
    ],
)
@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_nonfinite_gradients_are_skipped_by_default(mode: str, reason: str, track: bool, bad: float) -> None:
    prec = Precision(mode, "cpu")
    model = prec.prepare(_tiny())
    sgd = torch.optim.SGD(model.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.StepLR(sgd, step_size=1, gamma=0.5)
    opt = PrecisionOptimizer(sgd, prec, scheduler=sched, track_grad_norm=track)  # skip_nonfinite: default
    assert opt.skip_nonfinite is True
    before = [p.detach().clone() for p in model.parameters()]
    _backward(opt, model)
    model[2].bias.grad[0] = bad  # type: ignore[index]
    outcome = opt.step()
    assert (outcome.applied, outcome.reason, opt.skipped_steps) == (False, reason, 1)
    assert all(torch.equal(b, p) for b, p in zip(before, model.parameters()))
    assert sched.get_last_lr() == [0.1]
    _backward(opt, model)
    assert opt.step().applied and sched.get_last_lr() == [0.05]


def test_opting_out_lets_nan_reach_the_weights() -> None:
    model = _tiny()
    opt = PrecisionOptimizer(
        torch.optim.SGD(model.parameters(), lr=0.1), Precision("bf16-mixed"), skip_nonfinite=False
    )
    _backward(opt, model)
    model[2].bias.grad[0] = float("nan")  # type: ignore[index]
    assert opt.step().applied and torch.isnan(model[2].bias).any()


def test_fp16_true_norm_overflow_of_finite_gradients_is_not_a_skip() -> None:
    param = nn.Parameter(torch.zeros(64, dtype=torch.float16))
    opt = PrecisionOptimizer(torch.optim.SGD([param], lr=1e-6), Precision("fp16-true"), track_grad_norm=True)
    opt.backward((param.float() * 20000.0).sum())  # every gradient 20000: finite, but its 2-norm is 160000
    outcome = opt.step()
    assert outcome.applied and torch.isfinite(param).all()
    assert outcome.grad_norm == 160000.0  # computed again in float32, not float16's inf


@pytest.mark.parametrize("track", [False, True])
def test_the_check_costs_one_host_sync(track: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    model = _tiny()
    opt = PrecisionOptimizer(
        torch.optim.SGD(model.parameters(), lr=0.1), Precision("bf16-mixed"), track_grad_norm=track
    )
    _backward(opt, model)
    syncs = []
    for name in ("item", "__float__", "__bool__", "tolist"):
        original = getattr(torch.Tensor, name)
        monkeypatch.setattr(
            torch.Tensor, name, lambda t, *a, _o=original, _n=name: syncs.append(_n) or _o(t, *a)
        )
    assert opt.step().applied
    monkeypatch.undo()
    assert len(syncs) == 1, syncs


# -- rebind(): the optimizer rebuilt after densification -----------------------------------------------
def _skip_once(opt: PrecisionOptimizer, model: nn.Module) -> None:
    _backward(opt, model)
    next(model.parameters()).grad.view(-1)[0] = float("inf")  # type: ignore[union-attr]
    assert opt.step().reason == "scaler skipped (inf/NaN)"


def test_rebind_keeps_counters_scale_and_schedule() -> None:
    model = _tiny()
    groups = [{"params": [model[0].weight, model[0].bias], "name": "xyz", "lr": 0.1},
              {"params": [model[2].weight, model[2].bias], "name": "color", "lr": 0.01}]  # fmt: skip
    adam = torch.optim.Adam(groups)
    sched = torch.optim.lr_scheduler.StepLR(adam, step_size=1, gamma=0.5)
    opt = PrecisionOptimizer(adam, Precision("fp16-mixed"), scheduler=sched)
    _skip_once(opt, model)
    _backward(opt, model)
    assert opt.step().applied
    assert opt.scaler.get_scale() == 32768.0 and sched.get_last_lr() == [0.05, 0.005]
    # densify: the first layer gains two rows; the optimizer is rebuilt with the script's initial lrs,
    # the groups in another order
    grown = nn.Parameter(torch.cat([model[0].weight.detach(), model[0].weight.detach()[:2]]))
    bias = nn.Parameter(torch.cat([model[0].bias.detach(), model[0].bias.detach()[:2]]))
    head = nn.Parameter(torch.cat([model[2].weight.detach(), model[2].weight.detach()[:, :2]], dim=1))
    rebuilt = torch.optim.Adam([{"params": [head, model[2].bias], "name": "color", "lr": 0.01},
                                {"params": [grown, bias], "name": "xyz", "lr": 0.1}])  # fmt: skip
    opt.rebind(rebuilt)
    assert opt.optimizer is rebuilt and sched.optimizer is rebuilt
    assert (opt.steps, opt.skipped_steps, opt.scaler.get_scale()) == (2, 1, 32768.0)
    assert [g["lr"] for g in rebuilt.param_groups] == [0.005, 0.05]  # the schedule continues per name
    assert sched.base_lrs == [0.01, 0.1] and sched.last_epoch == 1
    x, y = _batch()
    with opt.precision.autocast():
        out = F.linear(F.relu(F.linear(x, grown, bias)), head, model[2].bias)
    opt.backward(F.cross_entropy(out.float(), y))
    before = grown.detach().clone()
    outcome = opt.step()
    assert outcome.applied and outcome.loss_scale == 32768.0 and opt.steps == 3
    assert not torch.equal(before, grown)
    assert [g["lr"] for g in rebuilt.param_groups] == [0.0025, 0.025]  # the scheduler steps the new groups


def test_param_groups_edited_in_place_need_no_rebind() -> None:
    model = _tiny()
    adam = torch.optim.Adam(model.parameters(), lr=1e-2)
    opt = PrecisionOptimizer(adam, Precision("fp16-mixed"))
    _skip_once(opt, model)
    _backward(opt, model)
    assert opt.step().applied
    old = adam.param_groups[0]["params"][0]  # 3DGS replace_tensor_to_optimizer: new tensor, moved state
    new = nn.Parameter(torch.cat([old.detach(), old.detach()[:1]]))
    state = adam.state.pop(old)
    state["exp_avg"] = torch.cat([state["exp_avg"], torch.zeros(1, 4)])
    state["exp_avg_sq"] = torch.cat([state["exp_avg_sq"], torch.zeros(1, 4)])
    adam.param_groups[0]["params"][0] = new
    adam.state[new] = state
    x, y = _batch()
    params = adam.param_groups[0]["params"]
    with opt.precision.autocast():
        out = F.linear(
            F.relu(F.linear(x, new, torch.cat([params[1], params[1][:1]]))[:, :8]), params[2], params[3]
        )
    opt.backward(F.cross_entropy(out.float(), y))
    before = new.detach().clone()
    outcome = opt.step()
    assert outcome.applied and outcome.loss_scale == 32768.0 and (opt.steps, opt.skipped_steps) == (3, 1)
    assert not torch.equal(before[:8], new[:8])


def test_rebind_between_unscale_and_step_unscales_once() -> None:
    reference = _reference_grads()
    model = _tiny()
    opt = PrecisionOptimizer(torch.optim.SGD(model.parameters(), lr=1.0), Precision("fp16-mixed"))
    _backward(opt, model)
    opt.unscale_()
    opt.rebind(torch.optim.SGD(model.parameters(), lr=1.0))
    before = [p.detach().clone() for p in model.parameters()]
    assert opt.step().applied
    for b, p, r in zip(before, model.parameters(), reference):
        torch.testing.assert_close(b - p.detach(), r, rtol=1e-2, atol=1e-4)  # unscaled once, not twice


def test_rebind_refuses_fp16_parameters_under_a_scaler_and_keeps_the_old_optimizer() -> None:
    model = _tiny()
    sgd = torch.optim.SGD(model.parameters(), lr=0.1)
    opt = PrecisionOptimizer(sgd, Precision("fp16-mixed"))
    with pytest.raises(PrecisionError, match="float16 under a GradScaler"):
        opt.rebind(torch.optim.SGD([nn.Parameter(torch.zeros(2, dtype=torch.float16))], lr=0.1))
    assert opt.optimizer is sgd
