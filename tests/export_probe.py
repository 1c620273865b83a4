"""What really ran: the dtypes of a tiny model's training step, under ampkit and under a framework.

The probe model is ``Linear(4, 8) -> LayerNorm(8) -> Linear(8, 2)``. A forward hook on the first
Linear records its output dtype (the compute dtype) and its weight dtype (the parameter dtype);
the LayerNorm's weight dtype shows whether normalisation stayed in fp32 (ampkit's true-half modes)
or was cast with the rest (frameworks that cast the whole model). :func:`ampkit_dtypes` runs the
same step through ampkit, so an export labelled ``exact`` on a CPU must reproduce it and one
labelled ``approximate`` must not (the tests assert both directions).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

import torch
from torch import nn

from ampkit import Precision


@dataclass(frozen=True)
class Dtypes:
    """The dtypes one training step really used."""

    linear_out: torch.dtype
    linear_weight: torch.dtype
    norm_weight: torch.dtype


class Probe(nn.Module):
    """The tiny model; ``seen`` holds the dtypes of the last forward."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Sequential(nn.Linear(4, 8), nn.LayerNorm(8), nn.Linear(8, 2))
        self.seen: Dtypes | None = None
        self.body[0].register_forward_hook(self._hook)

    def _hook(self, module: nn.Module, args: Any, out: torch.Tensor) -> None:
        weight, norm = next(module.parameters()), next(self.body[1].parameters())  # weights come first
        self.seen = Dtypes(out.dtype, weight.dtype, norm.dtype)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> Any:
        out = self.body(x)
        if labels is None:
            return out
        return {"loss": nn.functional.mse_loss(out.float(), labels.float()), "logits": out}


def batch() -> tuple[torch.Tensor, torch.Tensor]:
    """Two samples of four features and two targets."""
    generator = torch.Generator().manual_seed(1)
    return torch.randn(2, 4, generator=generator), torch.randn(2, 2, generator=generator)


def step(
    model: Probe, forward: Callable[[torch.Tensor], torch.Tensor], backward: Callable[[torch.Tensor], None]
) -> Dtypes:
    """One forward/backward through the framework's own calls; the dtypes the forward used."""
    x, y = batch()
    out = forward(x)
    backward(nn.functional.mse_loss(out.float(), y))
    assert model.seen is not None
    return model.seen


@cache
def ampkit_dtypes(mode: str) -> Dtypes:
    """One training step of the probe under ampkit's ``mode`` on the CPU."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        precision = Precision(mode, device="cpu")
        model = Probe()
        precision.prepare(model)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        scaler = precision.make_scaler()
        with precision.scope():
            x, y = precision.cast_inputs(batch())
            with precision.autocast():
                out = model(x)
            scaler.scale(nn.functional.mse_loss(out.float(), y.float())).backward()
            scaler.step(optimizer)
            scaler.update()
    assert model.seen is not None
    return model.seen
