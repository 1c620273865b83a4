"""A study's checks before its first arm starts: the arm plan on this device, and what must hold here.

:func:`plan_study` says which modes run on the study's device and why others are skipped;
:func:`require_runnable` refuses, with one :class:`~ampkit.errors.UsageError` line, a study that
cannot run here (its values, the ``--gpus`` process split, no runnable precision, a task or
command that cannot start); :func:`probe_task` builds the task once on the CPU to prove it builds.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import UsageError
from ..hardware.capabilities import DeviceCaps, device_capabilities
from .arms import ArmPlan, plan_arms, with_compile
from .experiment import Experiment

if TYPE_CHECKING:
    from ..tasks import Task


def _prefix(exp: Experiment) -> str:
    """``"experiment 'NAME': "`` inside a study file; nothing for the single study of the flags."""
    return "" if exp.name == "compare" else f"experiment {exp.name!r}: "


def plan_study(exp: Experiment) -> tuple[DeviceCaps, list[ArmPlan]]:
    """The device's capabilities and the arm plan (which modes run, which are skipped and why)."""
    if exp.command is not None:  # a command's device: --device, else where torch would train here
        from ..engine import default_device

        device = exp.overrides.get("device") or default_device()
    else:
        device = exp.overrides.get("device") or exp.train_config("fp32", exp.seeds[0]).device
    caps = device_capabilities(device)
    return caps, with_compile(plan_arms(exp.precisions, caps), exp.compile)


def probe_task(exp: Experiment) -> None:
    """Build the task once here, on the CPU, with the arms' size, batch size and first seed.

    A task that cannot be imported, or whose factory raises or returns something other than a
    Task, is refused before any arm starts (it would fail in every arm); so is a batch size larger
    than the task's training set (train's own check, :func:`ampkit.engine.setup.check_batch_size`).
    """
    from ..tasks import TaskSpec, build_task

    config = exp.train_config("fp32", exp.seeds[0])
    spec = TaskSpec(seed=config.seed, batch_size=config.batch_size, size=config.size)
    try:
        task = build_task(exp.task, spec)
    except UsageError as err:
        text, flag = str(err), f"--task {exp.task}: "
        if _prefix(exp) and text.startswith(flag):  # the task came from a study file, not the flag
            text = f"task = {exp.task!r}: {text[len(flag) :]}"
        raise UsageError(f"{_prefix(exp)}{text}") from None
    except (Exception, SystemExit) as err:  # a user's module or factory: anything may come out
        first = (str(err).strip().splitlines() or [""])[0]
        raise UsageError(
            f"{_prefix(exp)}task {exp.task!r}: building it (size={config.size}, batch_size={config.batch_size}) "
            f"raised {type(err).__name__}: {first}; valid: a factory that returns an ampkit.tasks.Task"
        ) from None
    _check_batch(exp, task, config.batch_size, config.size)


def _check_batch(exp: Experiment, task: Task, batch_size: int, size: str) -> None:
    """Every arm would refuse a batch larger than the training set: say it once, before they start."""
    from ..engine.setup import check_batch_size

    try:
        check_batch_size(batch_size, task, size)
    except UsageError as err:
        text = str(err)
        if _prefix(exp):  # the batch size came from a study file's overrides (or --batch-size over it)
            text = text.replace("--batch-size ", "batch_size ", 1)
        raise UsageError(f"{_prefix(exp)}{text}") from None


def require_runnable(exp: Experiment) -> list[ArmPlan]:
    """Raise :class:`UsageError` for studies that cannot run here (checked before any arm starts).

    Checks the values, the process split of ``--gpus``, that some precision runs on this device,
    and that the task builds; returns the arm plan.
    """
    exp.validate()
    if exp.command is not None:
        from .command_config import check_runnable

        check_runnable(exp)
    elif exp.gpus > 1:
        from ..engine.distributed import check_devices, check_split

        config = exp.train_config("fp32", exp.seeds[0])
        try:
            check_split(exp.gpus, config.strategy, config.batch_size)
            check_devices(exp.gpus, config.device)
        except UsageError as err:
            raise UsageError(f"--gpus {exp.gpus}: {err}") from None
    caps, plans = plan_study(exp)
    if not any(plan.run for plan in plans):
        why = "; ".join(f"{p.mode}: {p.reason}" for p in plans)
        raise UsageError(
            f"{_prefix(exp)}no precision runs on {caps.device_type} ({caps.name}): {why}; "
            "valid: modes this device runs (see ampkit doctor), e.g. fp32"
        )
    if exp.command is None:
        probe_task(exp)
    return plans
