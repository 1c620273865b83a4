"""Shared fixtures: a plain PyTorch reference loop and fake devices for fit checks."""

from __future__ import annotations

import sys
import warnings
from collections.abc import Iterator
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from ampkit.hardware import DeviceCaps
from ampkit.precision import PrecisionWarning
from ampkit.study import placeholders
from ampkit.tasks import TaskSpec, build_task

CPU_BF16 = DeviceCaps("cpu", "test cpu with bf16", None, frozenset({"avx512f", "avx512_bf16"}))
CPU_PLAIN = DeviceCaps("cpu", "test cpu without bf16", None, frozenset({"avx2"}))
V100 = DeviceCaps("cuda", "Tesla V100", (7, 0))
A100 = DeviceCaps("cuda", "A100", (8, 0))
H100 = DeviceCaps("cuda", "H100", (9, 0))

#: What a study sets in an arm's environment (``ampkit compare``), plus a launcher's ``RANK``: tests of
#: scripts start without them.
STUDY_VARS = (*placeholders.STUDY_VARS, "RANK")


@pytest.fixture(autouse=True)
def _quiet_precision_warnings() -> Iterator[None]:
    """fp16-on-CPU warnings are expected throughout the suite; tests that check them use pytest.warns."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PrecisionWarning)
        yield


@pytest.fixture(autouse=True)
def _not_under_accelerate_launch(monkeypatch: pytest.MonkeyPatch) -> None:
    """``accelerate launch --mixed_precision X`` exports ACCELERATE_MIXED_PRECISION, which ampkit reads
    as a default mode: the suite runs as a plain ``pytest`` would, whoever launched it."""
    monkeypatch.delenv("ACCELERATE_MIXED_PRECISION", raising=False)


@pytest.fixture
def outside_study(monkeypatch: pytest.MonkeyPatch) -> None:
    """The test starts outside any study, whatever the shell running pytest exported."""
    for name in STUDY_VARS:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def restore_torch_flags() -> Iterator[None]:
    """Exported snippets set global TF32 flags; put them back."""
    saved = (torch.get_float32_matmul_precision(), torch.backends.cudnn.allow_tf32)
    yield
    torch.set_float32_matmul_precision(saved[0])
    torch.backends.cudnn.allow_tf32 = saved[1]


@pytest.fixture(scope="module")
def keras(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """keras on the torch backend (its config folder under tmp), the global policy restored after."""
    if "keras" in sys.modules and sys.modules["keras"].backend.backend() != "torch":
        pytest.skip("keras was imported with another backend in this process")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("KERAS_BACKEND", "torch")
        patch.setenv("KERAS_HOME", str(tmp_path_factory.mktemp("keras-home")))
        module = pytest.importorskip("keras")
        saved = module.config.dtype_policy()
        yield module
        module.config.set_dtype_policy(saved)


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
