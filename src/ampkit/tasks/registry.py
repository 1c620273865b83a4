"""Find a task factory by built-in name or ``module:factory`` path.

Every way a ``--task`` can be wrong (unknown name, a module that is missing, raises on import
or has a syntax error, a factory that is missing, not callable, raises or returns the wrong
thing) is one :class:`~ampkit.errors.UsageError` line, never a traceback.
"""

from __future__ import annotations

import importlib
import os
import sys
import traceback
from collections.abc import Callable
from pathlib import Path

from ..errors import UsageError
from .base import Task, TaskSpec

TaskFactory = Callable[[TaskSpec], Task]

#: Built-in tasks: name -> ``"module:factory"`` (imported lazily, so unused tasks cost nothing).
BUILTIN: dict[str, str] = {
    "digits": "ampkit.tasks.digits:make_task",
    "tinygpt": "ampkit.tasks.tinygpt:make_task",
    "ct": "ampkit.tasks.ct:make_task",
}

VALID = f"valid: {', '.join(BUILTIN)} or module:factory"


def describe_exception(err: BaseException) -> str:
    """``Type: first line of the message (file:line)`` — where the innermost frame raised it."""
    lines = str(err).strip().splitlines()
    text = f"{type(err).__name__}: {lines[0]}" if lines else type(err).__name__
    frames = traceback.extract_tb(err.__traceback__)
    if frames and not isinstance(err, SyntaxError):  # a SyntaxError's message already names file and line
        last = frames[-1]
        text += f" ({last.filename}:{last.lineno})"
    return text


def _import_user_module(module_name: str) -> object:
    """Import ``module_name``; a module or package in the current folder is found as ``python -m``
    would find it, so ``ampkit train --task mytask:make_task`` works beside ``mytask.py``."""
    top = module_name.split(".")[0]
    here = os.getcwd()
    local = Path(here, f"{top}.py").is_file() or Path(here, top, "__init__.py").is_file()
    if local and here not in sys.path and "" not in sys.path:
        sys.path.insert(0, here)
    return importlib.import_module(module_name)


def resolve_factory(name: str) -> TaskFactory:
    """The factory for a built-in name or a ``package.module:callable`` path."""
    target = BUILTIN.get(name, name)
    module_name, _, attr = target.partition(":")
    if not module_name or not attr:
        raise UsageError(f"--task {name}: unknown task {name!r}; {VALID}")
    if not all(part.isidentifier() for part in module_name.split(".")):
        stem = Path(module_name).stem if module_name.endswith(".py") else "mytasks"
        raise UsageError(
            f"--task {name}: {module_name!r} is not a module name; valid: module:factory with a dotted "
            f"module name on the Python path, e.g. {stem}:{attr} (PYTHONPATH=folder of {stem}.py)"
        )
    try:
        module = _import_user_module(module_name)
    except ModuleNotFoundError as err:
        if err.name == module_name or module_name.startswith(f"{err.name}."):
            raise UsageError(
                f"--task {name}: no module {module_name!r} on the Python path "
                f"(the current folder or PYTHONPATH); {VALID}"
            ) from None
        raise UsageError(
            f"--task {name}: importing {module_name!r} failed: {describe_exception(err)}"
        ) from None
    except (Exception, SystemExit) as err:  # a user's module: any error on import is its fault
        raise UsageError(
            f"--task {name}: importing {module_name!r} failed: {describe_exception(err)}"
        ) from None
    factory = getattr(module, attr, None)
    if factory is None:
        raise UsageError(f"--task {name}: module {module_name!r} has no {attr!r}; {VALID}")
    if not callable(factory):
        raise UsageError(
            f"--task {name}: {module_name}.{attr} is not callable ({type(factory).__name__}); "
            "valid: a callable taking a TaskSpec and returning a Task"
        )
    return factory


def _shown(name: object) -> str:
    """``name`` as it could be typed after ``--task``, or its repr when it could not (one line always)."""
    if isinstance(name, str) and name and name.isprintable() and not any(c.isspace() for c in name):
        return name
    return repr(name)


def trusted_task(saved: object, source: str, *, given: str | None = None) -> str:
    """The task a file (a checkpoint) names, when it may be built; decided before anything is imported.

    A file does not choose code to run: a task it names is used only when it is one of
    :data:`BUILTIN`. A ``module:factory`` task is accepted only when the user names the same task
    explicitly (``given``, from ``--task``), which is then the user's choice, as in ``ampkit train``.
    ``given`` that differs from ``saved`` is refused as well: the weights belong to ``saved``.
    """
    shown = _shown(saved)
    if given is not None:
        if given != saved:
            raise UsageError(
                f"--task {_shown(given)}: {source} was trained on task {shown}; valid: --task {shown} or no --task"
            )
        return given
    if isinstance(saved, str) and saved in BUILTIN:
        return saved
    raise UsageError(
        f"{source} names the custom task {shown}, and a task named by a checkpoint is not imported "
        f"(that would run code the file chose); valid: a built-in task ({', '.join(BUILTIN)}), "
        f"or name it yourself with --task {shown}"
    )


def build_task(name: str, spec: TaskSpec) -> Task:
    """Build a task and check it honours the contract."""
    factory = resolve_factory(name)
    try:
        task = factory(spec)
    except (Exception, SystemExit) as err:
        if name in BUILTIN:
            raise  # ampkit's own factory failing is a bug, not a bad --task: keep the traceback
        raise UsageError(f"--task {name}: the factory raised {describe_exception(err)}") from None
    if not isinstance(task, Task):
        raise UsageError(
            f"--task {name}: the factory returned {type(task).__name__}; valid: a factory returning ampkit.tasks.Task"
        )
    return task
