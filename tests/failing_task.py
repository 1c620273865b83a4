"""User tasks (``--task failing_task:FACTORY``) that build fine but fail once training starts, so a
study's arm fails inside its own process after the parent's checks passed.

``make_task``: ``train_batch`` raises at step 1. ``make_task_seed1``: only seed 1 fails (a study with
``--seeds 0,1`` then has one measured and one failed run in the same arm). ``make_task_stuck``: the
first batch never comes, so the arm sits silent (no progress lines) until it is killed.
"""

from __future__ import annotations

import time

from ampkit.tasks import Task, TaskSpec, build_task


class BatchError(RuntimeError):
    """What the broken data pipeline raises."""


def _broken(task: Task) -> Task:
    def train_batch(i: int):  # type: ignore[no-untyped-def]
        print(f"failing_task: reading micro-batch {i}")  # stray stdout goes to the arm's log
        raise BatchError(f"shard for micro-batch {i} is unreadable")

    task.train_batch = train_batch
    return task


def make_task(spec: TaskSpec) -> Task:
    """digits whose every training batch raises."""
    return _broken(build_task("digits", spec))


def make_task_seed1(spec: TaskSpec) -> Task:
    """digits whose training batches raise for seed 1 only."""
    task = build_task("digits", spec)
    return _broken(task) if spec.seed == 1 else task


def make_task_stuck(spec: TaskSpec) -> Task:
    """digits whose first training batch never comes (a stuck data pipeline): the arm prints nothing."""
    task = build_task("digits", spec)

    def train_batch(i: int):  # type: ignore[no-untyped-def]
        time.sleep(120)
        raise BatchError("gave up waiting for micro-batch {i}")

    task.train_batch = train_batch
    return task


def raising_factory(spec: TaskSpec) -> Task:
    """A factory that raises while building (refused in the parent, before any arm)."""
    raise ValueError(f"no dataset for size {spec.size!r}")


def not_a_task(spec: TaskSpec) -> object:
    """A factory that returns something else than a Task."""
    return {"model": None}
