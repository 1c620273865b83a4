"""True-half modes: the default dtype is the weights' only while a prepared module's forward runs.

``scope()`` used to make bf16/fp16 the default dtype for the whole loop, so the user's own tensors
(an eval counter ``torch.zeros(())``, targets built with ``torch.tensor(list)``, densification
accumulators) silently became 16-bit: a bf16 counter stops at 256. Now ``prepare`` sets it for
the module's forward only (pre-hook + ``always_call`` forward hook, a per-thread stack).
"""

from __future__ import annotations

import copy
import io
import threading

import pytest
import torch
from torch import nn

from ampkit import Precision
from ampkit.precision.forward_dtype import forward_dtype, set_forward_dtype

TRUE_HALF = ["bf16-true", "fp16-true"]


class MakesTensors(nn.Module):
    """A forward that creates tensors without a dtype, as many models' forwards do."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.seen: list[torch.dtype] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        offset = torch.zeros(4)  # default dtype
        scale = torch.tensor(0.5)  # a Python float: default dtype too
        self.seen += [offset.dtype, scale.dtype]
        return self.fc(x + offset) * scale


class Boom(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("boom in forward")


@pytest.mark.parametrize("mode", TRUE_HALF)
def test_forward_creates_tensors_in_the_weights_dtype_like_plain_pytorch(mode: str) -> None:
    prec = Precision(mode, "cpu")
    torch.manual_seed(0)
    model = prec.prepare(MakesTensors())
    half = prec.spec.param_dtype
    x = torch.randn(3, 4)
    out = model(prec.cast_inputs(x))
    assert model.seen == [half, half] and out.dtype == half
    assert torch.get_default_dtype() == torch.float32  # only during forward
    # plain PyTorch: the same weights in the half dtype, the default dtype set by hand around forward
    torch.manual_seed(0)
    plain = MakesTensors().to(half)
    torch.set_default_dtype(half)
    try:
        expected = plain(x.to(half))
    finally:
        torch.set_default_dtype(torch.float32)
    assert torch.equal(out, expected)


@pytest.mark.parametrize("mode", TRUE_HALF)
@pytest.mark.parametrize("context", ["scope", "inference"])
def test_user_tensors_stay_float32_and_count_to_1000(mode: str, context: str) -> None:
    """s06's eval loop: a counter and a target sum beside a bf16 model, 1000 samples in batches of 10."""
    prec = Precision(mode, "cpu")
    model = prec.prepare(MakesTensors())
    with prec.scope() if context == "scope" else prec.inference():
        seen, total = torch.zeros(()), torch.zeros(())
        targets = torch.tensor([500.25] * 10)  # as a Dataset builds them from Python floats
        for i in range(100):
            if i % 25 == 0:
                model(prec.cast_inputs(torch.randn(10, 4)))  # the model's forward runs in between
            seen += 10
            total += targets.sum()
        assert torch.get_default_dtype() == torch.float32
    assert seen.dtype == total.dtype == targets.dtype == torch.float32
    assert seen.item() == 1000 and total.item() == pytest.approx(500250.0)
    # what a 16-bit counter would have done: bf16 cannot add 10 to 1000 exactly (904 in QA's run)
    assert torch.zeros((), dtype=torch.bfloat16).add_(1000).add_(10).item() != 1010


def test_fp64_scope_still_makes_float64_the_default() -> None:
    with Precision("fp64", "cpu").scope():
        assert torch.zeros(()).dtype == torch.float64
    assert torch.get_default_dtype() == torch.float32


def test_an_exception_in_forward_restores_the_default_dtype() -> None:
    model = Boom()
    set_forward_dtype(model, torch.bfloat16)
    with pytest.raises(RuntimeError, match="boom in forward"):
        model(torch.zeros(1))
    assert torch.get_default_dtype() == torch.float32


def test_a_raising_global_pre_hook_does_not_unbalance_the_stack() -> None:
    """always_call runs the restoring hook even when an earlier (global) pre-hook raised before ours."""
    model = MakesTensors()
    set_forward_dtype(model, torch.bfloat16)

    def fail(module: nn.Module, args: object) -> None:
        raise RuntimeError("global pre-hook")

    handle = nn.modules.module.register_module_forward_pre_hook(fail)
    try:
        with pytest.raises(RuntimeError, match="global pre-hook"):
            model(torch.zeros(1, 4))
    finally:
        handle.remove()
    assert torch.get_default_dtype() == torch.float32
    model.to(torch.bfloat16)(torch.zeros(1, 4, dtype=torch.bfloat16))  # and it still works afterwards
    assert model.seen[-1] == torch.bfloat16 and torch.get_default_dtype() == torch.float32


class Outer(nn.Module):
    """A float64 module calling a bf16 one (and itself, reentrantly) inside its forward."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner, self.log = inner, []  # type: ignore[var-annotated]

    def forward(self, x: torch.Tensor, depth: int = 0) -> torch.Tensor:
        self.log.append(("before", depth, torch.get_default_dtype()))
        self.inner(x.to(torch.bfloat16))
        if depth == 0:
            self(x, depth=1)  # reentrant
        self.log.append(("after", depth, torch.get_default_dtype()))
        return x


def test_nested_and_reentrant_forwards_restore_in_order() -> None:
    inner = MakesTensors().to(torch.bfloat16)
    set_forward_dtype(inner, torch.bfloat16)
    outer = Outer(inner)  # outer's hooks are not ampkit's business: set them here
    set_forward_dtype(outer, torch.float64)
    outer(torch.zeros(1, 4))
    assert inner.seen == [torch.bfloat16] * 4
    f64 = torch.float64
    assert outer.log == [("before", 0, f64), ("before", 1, f64), ("after", 1, f64), ("after", 0, f64)]
    assert torch.get_default_dtype() == torch.float32


class Waits(nn.Module):
    """A forward that blocks until told to go on, to overlap forwards of two threads."""

    def __init__(self, entered: threading.Event, go: threading.Event) -> None:
        super().__init__()
        self.entered, self.go = entered, go

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.entered.set()
        assert self.go.wait(10)
        return x


def test_overlapping_forwards_in_two_threads_leave_the_default_as_it_was() -> None:
    """Thread A enters, B enters (and saves A's bf16), A leaves, B leaves: float32 at the end, not bf16."""
    a_in, a_go, b_in, b_go = (threading.Event() for _ in range(4))
    model_a, model_b = Waits(a_in, a_go), Waits(b_in, b_go)
    for model in (model_a, model_b):
        set_forward_dtype(model, torch.bfloat16)
    thread_a = threading.Thread(target=model_a, args=(torch.zeros(1),))
    thread_b = threading.Thread(target=model_b, args=(torch.zeros(1),))
    thread_a.start()
    assert a_in.wait(10)
    thread_b.start()
    assert b_in.wait(10)
    a_go.set()
    thread_a.join(10)
    assert torch.get_default_dtype() == torch.bfloat16  # B's forward still runs
    b_go.set()
    thread_b.join(10)
    assert torch.get_default_dtype() == torch.float32


def test_prepare_twice_installs_one_hook_pair_and_copies_keep_it() -> None:
    prec = Precision("bf16-true", "cpu")
    model = prec.prepare(prec.prepare(MakesTensors()))
    assert len(model._forward_pre_hooks) == 1 and len(model._forward_hooks) == 1
    assert forward_dtype(model) == torch.bfloat16
    buffer = io.BytesIO()
    torch.save(model, buffer)  # a whole-module pickle, as some scripts checkpoint
    buffer.seek(0)
    for clone in (copy.deepcopy(model), torch.load(buffer, weights_only=False)):
        clone(torch.zeros(1, 4, dtype=torch.bfloat16))
        assert clone.seen[-1] == torch.bfloat16 and torch.get_default_dtype() == torch.float32
    assert forward_dtype(Precision("bf16-mixed", "cpu").prepare(MakesTensors())) is None
