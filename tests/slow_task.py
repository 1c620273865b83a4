"""A user task (``--task slow_task:make_task``) that is digits with a pause per batch, so a test can
kill a training process mid-run. It also shows the factory contract from a user's module."""

from __future__ import annotations

import time

from ampkit.tasks import Task, TaskSpec, build_task


def make_task(spec: TaskSpec) -> Task:
    """digits, 30 ms slower per micro-batch."""
    task = build_task("digits", spec)
    fetch = task.train_batch

    def slow_batch(i: int):  # type: ignore[no-untyped-def]
        time.sleep(0.03)
        return fetch(i)

    task.train_batch = slow_batch
    return task
