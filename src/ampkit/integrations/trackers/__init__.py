"""Experiment trackers: TensorBoard and MLflow (optional extras, imported only when asked for).

``ampkit train --log tensorboard,mlflow`` and ``ampkit compare --log ...``; in the API, engine hooks::

    from ampkit.engine import train
    from ampkit.integrations.trackers import MLflowHook, TensorBoardHook

    train(config, hooks=[TensorBoardHook("runs/x/tensorboard"), MLflowHook("file:runs/x/mlruns", "x")])

What is logged and where: docs/trackers.md.
"""

from .base import TRACKERS, parse_log, require
from .compare import StudyTrackers
from .from_results import log_train_result, record_scalars, result_scalars
from .live import TrackerHook
from .mlflow import MLflowHook, MLflowRun, resolve_uri
from .tensorboard import TensorBoardHook, TensorBoardRun

__all__ = [
    "TRACKERS",
    "MLflowHook",
    "MLflowRun",
    "StudyTrackers",
    "TensorBoardHook",
    "TensorBoardRun",
    "TrackerHook",
    "log_train_result",
    "parse_log",
    "record_scalars",
    "require",
    "resolve_uri",
    "result_scalars",
]
