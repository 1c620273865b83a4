"""PrecisionOptimizer against a plain PyTorch loop, and its guards."""

from __future__ import annotations

import contextlib

import pytest
import torch
import torch.nn.functional as F
from conftest import reference_losses
from torch import nn

from ampkit.optim import PrecisionOptimizer
from ampkit.precision import Precision, PrecisionError
from ampkit.tasks import TaskSpec, build_task


def ampkit_losses(mode: str, steps: int, *, size: str = "default", batch_size: int = 32) -> list[float]:
    """The same loop through ampkit's public API, as the README shows it."""
    task = build_task("digits", TaskSpec(seed=0, batch_size=batch_size, size=size))
    precision = Precision(mode, "cpu")
    model = precision.prepare(task.model)
    opt = PrecisionOptimizer(
        torch.optim.AdamW(model.parameters(), lr=task.default_lr), precision, model=model
    )
    losses = []
    with precision.scope():
        for i in range(steps):
            inputs, targets = task.train_batch(i)
            with precision.autocast():
                outputs = model(precision.cast_inputs(inputs))
            loss = F.cross_entropy(outputs.float(), targets)
            opt.backward(loss)
            opt.step()
            losses.append(loss.item())
    return losses


@pytest.mark.parametrize("mode", ["fp32", "bf16-mixed", "fp16-mixed"])
def test_public_api_is_bit_identical_to_plain_loop(mode: str) -> None:
    ours, theirs = ampkit_losses(mode, 50), reference_losses(mode, 50)
    assert ours == theirs  # exact float equality, all 50 steps
    assert ours[-1] < ours[0]


def _tiny(dtype: torch.dtype = torch.float32) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2)).to(dtype)


def _batch() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    return torch.randn(16, 4, generator=gen), torch.randint(0, 2, (16,), generator=gen)


def test_planted_inf_skips_step_halves_scale_and_holds_scheduler() -> None:
    precision = Precision("fp16-mixed", "cpu")
    model = _tiny()
    sgd = torch.optim.SGD(model.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.StepLR(sgd, step_size=1, gamma=0.5)
    opt = PrecisionOptimizer(sgd, precision, scheduler=sched, clip_grad_norm=1.0)
    x, y = _batch()
    before = [p.detach().clone() for p in model.parameters()]
    with precision.autocast():
        out = model(x)
    opt.backward(F.cross_entropy(out.float(), y))
    next(model.parameters()).grad[0, 0] = float("inf")  # type: ignore[index]
    outcome = opt.step()
    assert outcome.skipped and not outcome.applied
    assert outcome.loss_scale == 65536.0 and outcome.next_loss_scale == 32768.0
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert sched.get_last_lr() == [0.1] and opt.skipped_steps == 1
    # the next, finite step is applied and advances the scheduler
    with precision.autocast():
        out = model(x)
    opt.backward(F.cross_entropy(out.float(), y))
    outcome = opt.step()
    assert outcome.applied and sched.get_last_lr() == [0.05]
    assert not all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_clip_norm_is_norm_of_unscaled_gradients() -> None:
    precision = Precision("fp16-mixed", "cpu")
    x, y = _batch()
    reference = _tiny()
    F.cross_entropy(reference(x), y).backward()
    expected = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in reference.parameters()]))  # type: ignore[union-attr]
    model = _tiny()
    opt = PrecisionOptimizer(torch.optim.SGD(model.parameters(), lr=0.1), precision, clip_grad_norm=1e-3)
    opt.backward(F.cross_entropy(model(x).float(), y))  # fp32 forward: grads equal reference * scale
    outcome = opt.step()
    assert outcome.grad_norm == pytest.approx(float(expected), rel=1e-5)
    assert outcome.loss_scale == 65536.0


def test_accumulating_4x8_matches_batch_32_in_fp32() -> None:
    x = torch.randn(32, 4, generator=torch.Generator().manual_seed(3))
    y = torch.randint(0, 2, (32,), generator=torch.Generator().manual_seed(4))
    precision = Precision("fp32", "cpu")
    big, small = _tiny(), _tiny()
    opt_big = PrecisionOptimizer(torch.optim.SGD(big.parameters(), lr=0.5), precision)
    opt_small = PrecisionOptimizer(torch.optim.SGD(small.parameters(), lr=0.5), precision, accumulate=4)
    for _ in range(3):
        opt_big.backward(F.cross_entropy(big(x), y))
        opt_big.step()
        for chunk in range(4):
            assert not opt_small.ready
            sl = slice(8 * chunk, 8 * chunk + 8)
            opt_small.backward(F.cross_entropy(small(x[sl]), y[sl]))
        assert opt_small.ready
        opt_small.step()
    for a, b in zip(big.parameters(), small.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=0)


def test_plain_backward_under_scaler_is_refused() -> None:
    precision = Precision("fp16-mixed", "cpu")
    model = _tiny()
    opt = PrecisionOptimizer(torch.optim.SGD(model.parameters(), lr=0.1), precision)
    x, y = _batch()
    F.cross_entropy(model(x), y).backward()  # the mistake: the loss was never scaled
    with pytest.raises(PrecisionError, match=r"loss.backward\(\) was called directly.*opt.backward\(loss\)"):
        opt.step()


def test_fp16_parameters_under_scaler_are_refused() -> None:
    model = _tiny(torch.float16)
    with pytest.raises(PrecisionError, match=r"Attempting to unscale FP16 gradients.*fp16-true"):
        PrecisionOptimizer(torch.optim.SGD(model.parameters(), lr=0.1), Precision("fp16-mixed", "cpu"))


def test_fp16_true_runs_without_scaler() -> None:
    precision = Precision("fp16-true", "cpu")
    model = precision.prepare(_tiny())
    opt = PrecisionOptimizer(torch.optim.SGD(model.parameters(), lr=0.1), precision)
    assert not opt.scaler.is_enabled()
    x, y = _batch()
    opt.backward(F.cross_entropy(model(precision.cast_inputs(x)).float(), y))
    assert opt.step().applied and next(model.parameters()).dtype == torch.float16


def test_fused_adam_is_not_unscaled_twice() -> None:
    x, y = _batch()
    results = []
    for fused in (False, True):
        model = _tiny()
        adam = torch.optim.Adam(model.parameters(), lr=0.01, fused=fused)
        opt = PrecisionOptimizer(adam, Precision("fp16-mixed", "cpu"), clip_grad_norm=10.0)
        for _ in range(3):
            opt.backward(F.cross_entropy(model(x), y))
            assert opt.step().applied
        results.append([p.detach().clone() for p in model.parameters()])
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_state_dict_round_trip_keeps_scaler() -> None:
    precision = Precision("fp16-mixed", "cpu")
    model = _tiny()
    opt = PrecisionOptimizer(torch.optim.SGD(model.parameters(), lr=0.1), precision)
    x, y = _batch()
    opt.backward(F.cross_entropy(model(x), y))
    next(model.parameters()).grad.fill_(float("nan"))  # type: ignore[union-attr]
    opt.step()
    state = opt.state_dict()
    fresh = PrecisionOptimizer(torch.optim.SGD(model.parameters(), lr=0.1), precision)
    fresh.load_state_dict(state)
    assert fresh.scaler.get_scale() == 32768.0 and fresh.skipped_steps == 1 and fresh.steps == 1


def test_ddp_sync_context_is_no_sync_except_last_micro_batch() -> None:
    calls = []

    class FakeDDP(nn.parallel.DistributedDataParallel):
        def __init__(self) -> None:  # no process group needed to test the decision
            nn.Module.__init__(self)

        def no_sync(self):  # type: ignore[override]
            calls.append("no_sync")
            return contextlib.nullcontext()

    model = _tiny()
    opt = PrecisionOptimizer(
        torch.optim.SGD(model.parameters(), lr=0.1), Precision("fp32"), model=FakeDDP(), accumulate=3
    )
    x, y = _batch()
    for _ in range(3):
        with opt.sync_context():
            opt.backward(F.cross_entropy(model(x), y))
    assert calls == ["no_sync", "no_sync"]
    assert opt.step().applied
