"""The training engine: config -> precision + optimizer wrapper -> loop -> records and checkpoints."""

from .checkpoint import capture_rng, load_checkpoint, restore_rng, save_atomic
from .config import TrainConfig, default_device
from .evaluate import evaluate, task_loss
from .loop import CHECKPOINT_NAME, METRICS_NAME, TrainHook, run_step, synchronize, train
from .records import EvalRecord, RunResult, StepRecord
from .setup import RunSetup, build_run

__all__ = [
    "CHECKPOINT_NAME",
    "METRICS_NAME",
    "EvalRecord",
    "RunResult",
    "RunSetup",
    "StepRecord",
    "TrainConfig",
    "TrainHook",
    "build_run",
    "capture_rng",
    "default_device",
    "evaluate",
    "load_checkpoint",
    "restore_rng",
    "run_step",
    "save_atomic",
    "synchronize",
    "task_loss",
    "train",
]
