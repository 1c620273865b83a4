"""Shared fixtures: a plain PyTorch reference loop and fake devices for fit checks."""

from __future__ import annotations

import warnings
from collections.abc import Iterator

import pytest
import torch
import torch.nn.functional as F

from ampkit.hardware import DeviceCaps
from ampkit.precision import PrecisionWarning
from ampkit.tasks import TaskSpec, build_task

CPU_BF16 = DeviceCaps("cpu", "test cpu with bf16", None, frozenset({"avx512f", "avx512_bf16"}))
CPU_PLAIN = DeviceCaps("cpu", "test cpu without bf16", None, frozenset({"avx2"}))
V100 = DeviceCaps("cuda", "Tesla V100", (7, 0))
A100 = DeviceCaps("cuda", "A100", (8, 0))
H100 = DeviceCaps("cuda", "H100", (9, 0))


@pytest.fixture(autouse=True)
def _quiet_precision_warnings() -> Iterator[None]:
    """fp16-on-CPU warnings are expected throughout the suite; tests that check them use pytest.warns."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PrecisionWarning)
        yield


def reference_losses(mode: str, steps: int, *, size: str = "default", batch_size: int = 32) -> list[float]:
    """The textbook loop (torch.autocast + torch.amp.GradScaler), written without ampkit."""
    task = build_task("digits", TaskSpec(seed=0, batch_size=batch_size, size=size))
    model = task.model
    autocast_dtype = {"bf16-mixed": torch.bfloat16, "fp16-mixed": torch.float16}.get(mode)
    optimizer = torch.optim.AdamW(model.parameters(), lr=task.default_lr)
    scaler = torch.amp.GradScaler("cpu", enabled=mode == "fp16-mixed")
    losses = []
    for i in range(steps):
        inputs, targets = task.train_batch(i)
        with torch.autocast(
            "cpu", dtype=autocast_dtype or torch.bfloat16, enabled=autocast_dtype is not None
        ):
            loss = F.cross_entropy(model(inputs), targets)  # autocast runs cross_entropy in fp32
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
    return losses
