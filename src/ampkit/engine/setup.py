"""Build the pieces of a run from a :class:`TrainConfig`: precision, task, prepared model, optimizer."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..errors import UsageError
from ..optim import PrecisionOptimizer
from ..optim_bf16 import bf16_adamw
from ..precision import Precision
from ..tasks import Task, TaskSpec, build_task
from .config import TrainConfig
from .distributed import DistContext


@dataclass
class RunSetup:
    """Everything the loop needs, built once."""

    config: TrainConfig
    precision: Precision
    task: Task
    model: torch.nn.Module
    optimizer: PrecisionOptimizer
    total_steps: int
    dist: DistContext = field(default_factory=DistContext)
    """This process's rank in a multi-process run (rank 0 of 1 otherwise)."""


#: AdamW's eps per parameter dtype. PyTorch's 1e-8 is below fp16's smallest subnormal (6e-8):
#: in fp16-true it rounds to 0 and parameters with zero gradients get 0/0 = NaN updates.
ADAM_EPS = {torch.float16: 1e-4}


def build_optimizer(model: torch.nn.Module, config: TrainConfig, task: Task) -> torch.optim.Optimizer:
    """AdamW over the trainable parameters (state in the parameters' dtype; eps safe for that dtype)."""
    params = [p for p in model.parameters() if p.requires_grad]
    lr = config.lr if config.lr is not None else task.default_lr
    eps = max((ADAM_EPS.get(p.dtype, 1e-8) for p in params), default=1e-8)
    if config.bf16_update != "plain":
        return bf16_adamw(params, config.bf16_update, lr=lr, weight_decay=config.weight_decay, eps=eps)
    return torch.optim.AdamW(params, lr=lr, weight_decay=config.weight_decay, eps=eps)


def check_batch_size(batch_size: int, task: Task, size: str) -> None:
    """Refuse a micro-batch larger than the task's training set: its batches would hold fewer
    samples than asked while the records said otherwise. A stream without an end (0) has no bound."""
    samples = task.samples_per_epoch
    if 0 < samples < batch_size:
        raise UsageError(
            f"--batch-size {batch_size}: larger than the {samples} training samples of task "
            f"{task.name} (size {size}); valid: 1..{samples}"
        )


def build_run(
    config: TrainConfig, precision: Precision | None = None, dist: DistContext | None = None
) -> RunSetup:
    """Resolve the precision, build the task and model (wrapped for ``dist``), wrap the optimizer."""
    dist = dist or DistContext()
    device = dist.device(config.device)
    if config.threads:
        torch.set_num_threads(config.threads)
    precision = precision or Precision(
        config.precision, device, keep_fp32=config.keep_fp32, fp8_emulate=config.fp8_emulate
    )
    task = build_task(config.task, TaskSpec(config.seed, config.batch_size, device, config.size))
    model = dist.prepare(task.model, precision)
    if config.compile:  # after prepare: the compiled graph has the mode's dtypes, islands and fp8 layers
        backend = {"backend": config.compile_backend} if config.compile_backend else {}
        model = precision.compile(model, **backend)
    optimizer = PrecisionOptimizer(
        build_optimizer(model, config, task),
        precision,
        model=model,
        accumulate=config.accumulate,
        clip_grad_norm=config.clip_grad_norm,
        clip_grad_value=config.clip_grad_value,
        track_grad_norm=config.track_grad_norm,
    )
    return RunSetup(
        config, precision, task, model, optimizer, config.total_steps(task.samples_per_epoch), dist
    )
