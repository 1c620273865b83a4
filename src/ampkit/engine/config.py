"""``TrainConfig``: every knob of a training run, typed, with its meaning beside it."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch


def default_device() -> str:
    """``"cuda"`` when a GPU is visible, else ``"cpu"``."""
    return "cuda" if torch.cuda.is_available() else "cpu"


@dataclass
class TrainConfig:
    """A training run of one task under one precision."""

    task: str = "digits"
    """Built-in task name (digits, tinygpt, ct) or ``module:factory``."""
    precision: str = "fp32"
    """Any precision spelling; resolved to a canonical mode."""
    keep_fp32: str | None = None
    """Modules kept in fp32: ``"LayerNorm,re:^head\\."`` (types or ``re:`` name patterns)."""
    device: str = dataclasses.field(default_factory=default_device)
    """Torch device string."""
    steps: int | None = None
    """Optimizer steps; default 200 unless ``epochs`` is given."""
    epochs: float | None = None
    """Passes over the training set (tasks with a finite set); converted to steps."""
    batch_size: int = 64
    """Samples per micro-batch."""
    accumulate: int = 1
    """Micro-batches per optimizer step (gradient accumulation)."""
    clip_grad_norm: float | None = None
    """Clip the unscaled gradients to this total 2-norm."""
    clip_grad_value: float | None = None
    """Clip each unscaled gradient element to [-v, v]."""
    lr: float | None = None
    """AdamW learning rate; the task's default when None."""
    weight_decay: float = 0.01
    """AdamW weight decay (PyTorch's AdamW default)."""
    seed: int = 0
    """Seeds model initialisation and data order."""
    size: str = "default"
    """Task size: ``default``, ``small`` (tiny shapes for tests and fp16 on CPU) or ``gpu`` (matmul-bound
    on a GPU: tinygpt at GPT-2 small's shape, a wider and deeper CNN for digits)."""
    out: Path | None = None
    """Run folder for ``metrics.json`` and ``last.pt``; nothing is written when None."""
    checkpoint_every: int = 0
    """Write ``out/last.pt`` every N optimizer steps (0: only at the end)."""
    resume: bool = False
    """Continue from ``out/last.pt`` when it exists (refused when its task, size, seed, batch size,
    accumulation or step count conflicts with this config)."""
    resume_any: bool = False
    """Resume (as ``resume``) with the checkpoint's own task, size, seed, batch size and accumulation."""
    eval_every: int = 0
    """Evaluate on the held-out set every N steps (0: only at the end)."""
    threads: int | None = None
    """``torch.set_num_threads`` for CPU runs (recorded in the results either way)."""
    bf16_update: str = "plain"
    """How bf16 parameters take updates: ``plain`` (AdamW, round to nearest), ``kahan`` or ``stochastic``."""
    fp8_emulate: bool = False
    """fp8-mixed without fp8 hardware: fp8 casts and scales around fp32 matmuls (slow, same numerics)."""
    compile: bool = False
    """``torch.compile`` the prepared model (in place: checkpoints keep their keys); where the mode
    cannot compile here or the compile fails, one warning line and the run goes on eager."""
    compile_backend: str | None = None
    """torch.compile backend with ``compile``; None: inductor (``aot_eager``/``eager`` only trace)."""
    nproc: int = 1
    """Processes training together (``--nproc``); each takes its slice of every global micro-batch."""
    strategy: str = "ddp"
    """Multi-process wrapping: ``ddp`` (DistributedDataParallel) or ``fsdp`` (FSDP2 ``fully_shard``)."""
    on_nonfinite: str = "skip"
    """Non-finite loss/gradients: ``skip`` the step, ``fallback`` (fp16-mixed -> bf16-mixed -> fp32) or ``stop``."""
    fallback_after: int = 5
    """``fallback`` switches mode after this many consecutive skipped steps."""
    fallback_scale_floor: float = 1.0
    """``fallback`` also switches when the loss scale drops under this."""
    detect_anomaly: bool = False
    """Hook every module to name the first one whose output or gradient went non-finite."""
    flop_share: bool = True
    """Measure the share of matmul/conv FLOPs run in low precision (one probe pass at start)."""
    track_grad_norm: bool = True
    """Compute the unscaled gradient norm every step (one reduction; shown in history)."""
    progress: bool = True
    """Show a progress bar."""

    def total_steps(self, samples_per_epoch: int) -> int:
        """Optimizer steps this config asks for."""
        if self.steps is not None:
            return self.steps
        if self.epochs is not None and samples_per_epoch:
            per_step = self.batch_size * self.accumulate
            return max(1, int(-(-self.epochs * samples_per_epoch // per_step)))
        return 200

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready copy."""
        data = dataclasses.asdict(self)
        data["out"] = str(self.out) if self.out is not None else None
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Inverse of :meth:`to_dict`: the config a file holds, every field checked first.

        An unknown field, or a field of the wrong type or out of range (``batch_size = 0``,
        ``seed = 2**80``, ``lr = "abc"``), raises :class:`~.config_check.ConfigError` (a
        ``ValueError``: ``"<field> is <value>; valid: ..."``) before anything is built.
        """
        from .config_check import check_config_dict

        check_config_dict(data, {f.name for f in dataclasses.fields(cls)})
        values = dict(data)
        if values.get("out") is not None:
            values["out"] = Path(values["out"])
        return cls(**values)
