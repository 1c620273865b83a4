"""PrecisionOptimizer as a drop-in ``torch.optim.Optimizer``: each line a script already has works as in torch."""

from __future__ import annotations

import copy
import pickle
import warnings
from collections.abc import Callable
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ampkit.errors import UsageError
from ampkit.optim import PrecisionOptimizer
from ampkit.precision import Precision, PrecisionError


def _tiny(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))


def _loss(model: nn.Module, step: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(step)
    x, y = torch.randn(16, 4, generator=gen), torch.randint(0, 2, (16,), generator=gen)
    return F.cross_entropy(model(x).float(), y)


def _weights(model: nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in model.parameters()]


def _same(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return len(a) == len(b) and all(torch.equal(x, y) for x, y in zip(a, b))


def test_it_is_a_torch_optimizer_whose_groups_state_and_defaults_are_the_wrapped_ones() -> None:
    model = _tiny()
    adam = torch.optim.Adam(model.parameters(), lr=1e-2)
    opt = PrecisionOptimizer(adam, "fp32")
    assert isinstance(opt, torch.optim.Optimizer)
    assert opt.param_groups is adam.param_groups and opt.defaults is adam.defaults
    opt.backward(_loss(model, 0))
    opt.step()
    assert opt.state is adam.state and len(opt.state) == 4  # Adam's moments, reached through the wrapper
    opt.param_groups[0]["lr"] = 5e-3  # the usual manual lr edit
    assert adam.param_groups[0]["lr"] == 5e-3
    groups = [dict(adam.param_groups[0])]
    opt.param_groups = groups  # the setters reach the wrapped optimizer too
    assert adam.param_groups is groups


@pytest.mark.parametrize("set_to_none", [True, False])
def test_zero_grad_set_to_none_is_torchs(set_to_none: bool) -> None:
    ours, theirs = _tiny(), _tiny()
    opt = PrecisionOptimizer(torch.optim.SGD(ours.parameters(), lr=0.1), "fp32")
    sgd = torch.optim.SGD(theirs.parameters(), lr=0.1)
    opt.backward(_loss(ours, 0))
    _loss(theirs, 0).backward()
    opt.zero_grad(set_to_none=set_to_none)
    sgd.zero_grad(set_to_none=set_to_none)
    for p, q in zip(ours.parameters(), theirs.parameters()):
        assert (p.grad is None) == (q.grad is None) == set_to_none
        assert set_to_none or (torch.equal(p.grad, q.grad) and not p.grad.any())
    assert not opt.ready  # the partial accumulation is dropped too


def _unfreeze_run(add: Callable[[Any, nn.Module], None], wrap: bool) -> list[torch.Tensor]:
    """Head first; at step 2 the body is unfrozen and added as a param group (timm/fastai recipe)."""
    model = _tiny()
    body, head = model[0], model[2]
    body.requires_grad_(False)
    adam = torch.optim.Adam(head.parameters(), lr=1e-2)
    opt: Any = PrecisionOptimizer(adam, "fp32") if wrap else adam
    for step in range(5):
        opt.zero_grad(set_to_none=True)
        if step == 2:
            body.requires_grad_(True)
            add(opt, body)
        loss = _loss(model, step)
        opt.backward(loss) if wrap else loss.backward()
        opt.step()
    return _weights(model)


def test_add_param_group_on_the_wrapper_or_the_wrapped_optimizer_trains_as_torch() -> None:
    theirs = _unfreeze_run(
        lambda opt, body: opt.add_param_group({"params": body.parameters(), "lr": 1e-3}), False
    )
    on_wrapper = _unfreeze_run(
        lambda opt, body: opt.add_param_group({"params": body.parameters(), "lr": 1e-3}), True
    )
    on_inner = _unfreeze_run(
        lambda opt, body: opt.optimizer.add_param_group({"params": body.parameters(), "lr": 1e-3}), True
    )
    assert _same(on_wrapper, theirs) and _same(on_inner, theirs)
    assert not torch.equal(theirs[0], _weights(_tiny())[0])  # the unfrozen body did train


@pytest.mark.parametrize("mode", ["fp32", "fp16-mixed"])
def test_step_with_a_closure_returns_its_loss_and_steps_as_torch(mode: str) -> None:
    ours, theirs, plain = _tiny(), _tiny(), _tiny()
    opt = PrecisionOptimizer(torch.optim.SGD(ours.parameters(), lr=0.1), Precision(mode, "cpu"))
    other = PrecisionOptimizer(torch.optim.SGD(plain.parameters(), lr=0.1), Precision(mode, "cpu"))
    sgd = torch.optim.SGD(theirs.parameters(), lr=0.1)
    for step in range(3):

        def closure(step: int = step) -> torch.Tensor:
            opt.zero_grad()
            loss = _loss(ours, step)
            opt.backward(loss)
            return loss

        def torch_closure(step: int = step) -> torch.Tensor:
            sgd.zero_grad()
            loss = _loss(theirs, step)
            loss.backward()
            return loss

        with torch.no_grad():  # torch runs the closure with gradients enabled, so do we
            loss = opt.step(closure)
            torch_loss = sgd.step(torch_closure)
        other.backward(_loss(plain, step))
        assert other.step().applied
        assert isinstance(loss, torch.Tensor) and torch.equal(loss, torch_loss)
    assert _same(_weights(ours), _weights(plain))  # the closure step is the ordinary step
    if mode == "fp32":
        assert _same(_weights(ours), _weights(theirs))


def test_a_closure_with_a_plain_backward_under_a_scaler_names_opt_backward() -> None:
    model = _tiny()
    opt = PrecisionOptimizer(torch.optim.SGD(model.parameters(), lr=0.1), Precision("fp16-mixed", "cpu"))
    before = _weights(model)

    def closure() -> torch.Tensor:
        loss = _loss(model, 0)
        loss.backward()  # left as it was in the torch script
        return loss

    with pytest.raises(PrecisionError, match=r"call opt\.backward\(loss\) instead"):
        opt.step(closure)
    assert _same(_weights(model), before)


def _lrs(wrap: bool, skip_first: bool) -> tuple[list[float], list[str]]:
    model = _tiny()
    sgd = torch.optim.SGD(model.parameters(), lr=0.1)
    opt: Any = PrecisionOptimizer(sgd, Precision("fp16-mixed", "cpu")) if wrap else sgd
    scaler = torch.amp.GradScaler("cpu")
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
    lrs = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for step in range(6):
            loss = _loss(model, step) * (float("inf") if skip_first and step == 0 else 1.0)
            if wrap:
                opt.backward(loss)
                assert opt.step().applied == (step > 0 or not skip_first)
            else:
                scaler.scale(loss).backward()
                scaler.step(sgd)
                scaler.update()
                sgd.zero_grad()
            sched.step()
            lrs.append(sgd.param_groups[0]["lr"])
    return lrs, [str(w.message) for w in caught if "lr_scheduler" in str(w.message)]


def test_an_lr_scheduler_built_on_the_wrapper_steps_the_wrapped_lr_once_and_does_not_warn() -> None:
    ours, warned = _lrs(wrap=True, skip_first=False)
    theirs, torch_warned = _lrs(wrap=False, skip_first=False)
    assert ours == theirs == [0.1, 0.05, 0.05, 0.025, 0.025, 0.0125] and warned == torch_warned == []
    # a first step the scaler skips: torch's loop warns "lr_scheduler.step() before optimizer.step()",
    # although the script called them in order; the wrapper's step was called, so it does not
    ours, warned = _lrs(wrap=True, skip_first=True)
    theirs, torch_warned = _lrs(wrap=False, skip_first=True)
    assert ours == theirs and warned == [] and len(torch_warned) == 1


def test_an_lr_scheduler_built_on_the_wrapper_continues_across_rebind() -> None:
    model = _tiny()
    opt = PrecisionOptimizer(torch.optim.Adam(model.parameters(), lr=0.1), "fp32")
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    for step in range(2):
        opt.backward(_loss(model, step))
        opt.step()
        sched.step()
    rebuilt = torch.optim.Adam(model.parameters(), lr=0.1)
    opt.rebind(rebuilt)
    assert sched.optimizer is opt and rebuilt.param_groups[0]["lr"] == 0.025  # continued, not reset to 0.1
    opt.backward(_loss(model, 2))
    assert opt.step().applied
    sched.step()
    assert rebuilt.param_groups[0]["lr"] == 0.0125 and sched.get_last_lr() == [0.0125]


def test_step_hooks_run_around_applied_updates_and_are_removable() -> None:
    model = _tiny()
    sgd = torch.optim.SGD(model.parameters(), lr=0.1)
    opt = PrecisionOptimizer(sgd, Precision("fp16-mixed", "cpu"))
    calls: list[tuple[str, Any]] = []
    pre = opt.register_step_pre_hook(lambda o, args, kwargs: calls.append(("pre", o)))
    post = opt.register_step_post_hook(lambda o, args, kwargs: calls.append(("post", o)))
    saved = opt.register_state_dict_post_hook(lambda o, state: {**state, "note": 1})
    opt.backward(_loss(model, 0))
    assert opt.step().applied
    opt.backward(_loss(model, 1) * float("inf"))
    assert not opt.step().applied  # a skipped step runs no update, so no hooks (as with torch's GradScaler)
    assert calls == [("pre", sgd), ("post", sgd)]
    assert opt.state_dict()["optimizer"]["note"] == 1
    pre.remove()
    post.remove()
    saved.remove()
    opt.backward(_loss(model, 2))
    opt.step()
    assert len(calls) == 2 and "note" not in opt.state_dict()["optimizer"]


def test_pickle_and_deepcopy_keep_the_wrapper_and_a_scheduler_built_on_it() -> None:
    model = _tiny()
    opt = PrecisionOptimizer(torch.optim.SGD(model.parameters(), lr=0.1), Precision("fp16-mixed", "cpu"))
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    opt.backward(_loss(model, 0))
    opt.step()
    sched.step()
    again = pickle.loads(pickle.dumps(opt))
    assert again.state_dict()["scaler"] == opt.state_dict()["scaler"] and again.steps == 1
    twin = copy.deepcopy({"model": model, "opt": opt, "sched": sched})
    twin_opt, twin_sched = twin["opt"], twin["sched"]
    assert twin_sched.optimizer is twin_opt and twin_opt.optimizer is not opt.optimizer
    before = _weights(model)
    twin_opt.backward(_loss(twin["model"], 1))
    assert twin_opt.step().applied
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the copy's step is tracked for its scheduler: no warning
        twin_sched.step()
    assert twin_opt.param_groups[0]["lr"] == 0.025 and opt.param_groups[0]["lr"] == 0.05
    assert _same(_weights(model), before) and not _same(_weights(twin["model"]), before)


def test_several_optimizers_show_all_groups_and_hooks_go_to_each() -> None:
    model = _tiny()
    body = torch.optim.SGD(model[0].parameters(), lr=0.1)
    head = torch.optim.Adam(model[2].parameters(), lr=1e-3)
    opt = PrecisionOptimizer([body, head], "fp32")
    assert opt.param_groups == [*body.param_groups, *head.param_groups]
    assert set(opt.state) == set()  # nothing stepped yet
    calls: list[Any] = []
    handle = opt.register_step_pre_hook(lambda o, args, kwargs: calls.append(o))
    opt.backward(_loss(model, 0))
    opt.step()
    assert calls == [body, head] and len(opt.state) == 2  # Adam's state of the head's two tensors
    handle.remove()
    opt.backward(_loss(model, 1))
    opt.step()
    assert len(calls) == 2
    with pytest.raises(UsageError, match=r"opt\.optimizers\[i\]\.add_param_group"):
        opt.add_param_group({"params": []})
    with pytest.raises(AttributeError, match=r"opt\.optimizers\[i\]\.defaults"):
        _ = opt.defaults
