"""Non-finite localisation: the first module whose output or gradient went NaN, with step and mode."""

from __future__ import annotations

import logging

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ampkit.engine import TrainConfig, train
from ampkit.numerics import AnomalyHooks, NonFiniteError

MARK = 777.0  # batch 2 (step 3) carries this value; ``bad`` turns it into NaN


class PlantedNaN(nn.Module):
    """Multiplies by NaN when its input carries the marker: a NaN born in this layer's forward."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * float("nan") if bool((x == MARK).any()) else x


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.first = nn.Linear(4, 8)
        self.bad = PlantedNaN()
        self.block = nn.Sequential(nn.ReLU(), nn.Linear(8, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.first(x)
        return self.block(self.bad(torch.where(x[:, :1] == MARK, MARK, h)))


def nan_at_step3(spec):  # type: ignore[no-untyped-def]
    """Task factory: batch 2 (optimizer step 3) plants a NaN in module ``bad``."""
    from ampkit.tasks import Task

    torch.manual_seed(spec.seed)

    def batch(i: int) -> tuple[torch.Tensor, torch.Tensor]:
        gen = torch.Generator().manual_seed(i)
        x = torch.randn(spec.batch_size, 4, generator=gen)
        if i == 2:
            x[0, 0] = MARK
        return x, torch.randint(0, 3, (spec.batch_size,), generator=gen)

    return Task(
        "nan3", Net(), batch, lambda: [batch(100)], F.cross_entropy, lambda o, t: 0.0, samples_per_epoch=0
    )


def _config(**kw) -> TrainConfig:  # type: ignore[no-untyped-def]
    return TrainConfig(
        task="test_numerics_localize:nan_at_step3",
        precision="fp32",
        steps=5,
        batch_size=8,
        device="cpu",
        progress=False,
        **kw,
    )


def test_planted_nan_is_reported_with_layer_name_and_step(caplog) -> None:  # type: ignore[no-untyped-def]
    seen = _LastRun()
    with caplog.at_level(logging.WARNING, logger="ampkit"):
        result = train(_config(detect_anomaly=True), hooks=[seen])
    assert result.nonfinite[0] == {
        "step": 3,
        "mode": "fp32",
        "where": "forward",
        "module": "bad",
        "kind": "nan",
        "loss_scale": None,
    }
    assert len(result.nonfinite) == 1
    assert "step 3: nan in forward in module 'bad' under fp32" in caplog.text
    # skip: step 3 was not applied (no NaN update without a scaler), training went on finite
    assert [r.applied for r in result.history] == [True, True, False, True, True]
    assert all(bool(torch.isfinite(p).all()) for p in seen.run.model.parameters())
    assert torch.isfinite(torch.tensor(result.history[4].loss))


class _LastRun:
    """A train hook that keeps the run, to look at the weights afterwards."""

    def on_step_end(self, record, run) -> None:  # type: ignore[no-untyped-def]
        self.run = run


def test_cheap_level_reports_the_loss_without_a_module() -> None:
    result = train(_config(flop_share=False))
    assert [(e["step"], e["where"], e["module"]) for e in result.nonfinite] == [(3, "loss", None)]


def test_stop_raises_one_line_naming_step_module_and_mode() -> None:
    with pytest.raises(NonFiniteError, match=r"^step 3: nan in forward in module 'bad' under fp32$"):
        train(_config(detect_anomaly=True, on_nonfinite="stop", flop_share=False))


class _NaNGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):  # type: ignore[no-untyped-def]
        return x.clone()

    @staticmethod
    def backward(ctx, grad):  # type: ignore[no-untyped-def]
        return grad * float("nan")


class _BadBackward(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _NaNGrad.apply(x)


def test_first_nonfinite_gradient_in_backward_order() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 4), _BadBackward(), nn.Linear(4, 4), nn.Linear(4, 2))
    with AnomalyHooks(model) as hooks:
        model(torch.randn(3, 4)).sum().backward()
        # backward runs 3, 2, 1, 0: the gradient into module 1's output is fine, the NaN appears in
        # what module 1 hands back, i.e. the gradient into module 0's output (and module 0's weights)
        assert hooks.take() == ("backward", "0", "nan")
        assert hooks.take() is None
    assert not model[0]._forward_hooks  # removed on exit
