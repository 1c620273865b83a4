"""Find a task factory by built-in name or ``module:factory`` path."""

from __future__ import annotations

import importlib
from collections.abc import Callable

from ..errors import UsageError
from .base import Task, TaskSpec

TaskFactory = Callable[[TaskSpec], Task]

#: Built-in tasks: name -> ``"module:factory"`` (imported lazily, so unused tasks cost nothing).
BUILTIN: dict[str, str] = {
    "digits": "ampkit.tasks.digits:make_task",
    "tinygpt": "ampkit.tasks.tinygpt:make_task",
    "ct": "ampkit.tasks.ct:make_task",
}


def resolve_factory(name: str) -> TaskFactory:
    """The factory for a built-in name or a ``package.module:callable`` path."""
    target = BUILTIN.get(name, name)
    if ":" not in target:
        raise UsageError(f"unknown task {name!r}; valid: {', '.join(BUILTIN)} or module:factory")
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise UsageError(f"task {name!r}: cannot import {module_name!r} ({err})") from None
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise UsageError(f"task {name!r}: {module_name!r} has no callable {attr!r}")
    return factory


def build_task(name: str, spec: TaskSpec) -> Task:
    """Build a task and check it honours the contract."""
    task = resolve_factory(name)(spec)
    if not isinstance(task, Task):
        raise UsageError(
            f"task {name!r}: the factory returned {type(task).__name__}, expected ampkit.tasks.Task"
        )
    return task
