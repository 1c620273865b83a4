"""The task contract: what the engine needs to train and evaluate a model.

A *task factory* is any callable ``factory(spec: TaskSpec) -> Task``. Built-in tasks are
registered by name (``digits``, ``tinygpt``, ``ct``); a user's own is reached with
``--task my_module:make_task``. Batches are a pure function of the micro-batch index and the
seed, so a run resumed from a checkpoint sees exactly the batches an uninterrupted run sees.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import torch
from torch import nn

Batch = tuple[torch.Tensor, torch.Tensor]
"""``(inputs, targets)``; inputs may also be a tuple/dict of tensors, passed to ``model(inputs)``."""


@dataclass(frozen=True)
class TaskSpec:
    """What the engine asks a factory for."""

    seed: int = 0
    """Seeds model initialisation and data order."""
    batch_size: int = 64
    """Samples per micro-batch."""
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    """Where batches should live (factories may keep a whole small dataset there)."""
    size: str = "default"
    """``"default"``, ``"small"`` (tiny shapes for tests and for fp16 compute on CPUs) or ``"gpu"``
    (matmul-bound on a GPU; the built-in digits and tinygpt have it)."""


@dataclass
class Task:
    """A model with its data, loss and metric. Returned by a task factory."""

    name: str
    """Short name shown in logs and reports."""
    model: nn.Module
    """Freshly initialised (from ``spec.seed``), in fp32 on the CPU or ``spec.device``."""
    train_batch: Callable[[int], Batch]
    """Micro-batch ``i`` of training (deterministic in ``i`` and the seed; epochs wrap around)."""
    eval_batches: Callable[[], Iterable[Batch]]
    """The held-out set, in fixed order."""
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    """``loss_fn(outputs, targets)``; the engine calls it in fp32 with fp32 outputs."""
    metric_fn: Callable[[torch.Tensor, torch.Tensor], float]
    """``metric_fn(outputs, targets)`` for one eval batch; averaged over samples by the engine."""
    metric_name: str = "accuracy"
    """Name of the metric in reports."""
    higher_is_better: bool = True
    """Direction of the metric (for deltas and ``--target-metric``)."""
    samples_per_epoch: int = 0
    """Training-set size (for ``--epochs``); 0 when the stream is endless."""
    items_per_sample: int = 1
    """Throughput unit per sample: 1 for images, sequence length for language models."""
    item_unit: str = "samples"
    """``"samples"`` or ``"tokens"`` (throughput is reported in this unit per second)."""
    default_lr: float = 1e-3
    """Learning rate used when the command line gives none."""
