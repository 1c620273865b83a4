"""Evaluation under a precision: the held-out loss and the task's metric."""

from __future__ import annotations

import torch

from ..precision import Precision, fp32_region
from ..tasks import Task


def task_loss(task: Task, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The task's loss computed in fp32, whatever dtype the model produced."""
    with fp32_region():
        return task.loss_fn(outputs.float(), targets)


def evaluate(model: torch.nn.Module, task: Task, precision: Precision) -> dict[str, float]:
    """Mean loss and metric over ``task.eval_batches()``, weighted by batch size."""
    was_training = model.training
    model.eval()
    total = loss_sum = metric_sum = 0.0
    try:
        with precision.inference():
            for inputs, targets in task.eval_batches():
                outputs = model(precision.cast_inputs(inputs))
                n = len(targets)
                loss_sum += float(task_loss(task, outputs, targets)) * n
                metric_sum += task.metric_fn(outputs.float(), targets) * n
                total += n
    finally:
        model.train(was_training)
    total = max(total, 1.0)
    return {"loss": loss_sum / total, task.metric_name: metric_sum / total}
