"""Built-in tasks for demos and tests, and the contract a user's own task follows."""

from .base import Batch, Task, TaskSpec
from .registry import BUILTIN, build_task, resolve_factory

__all__ = ["BUILTIN", "Batch", "Task", "TaskSpec", "build_task", "resolve_factory"]
