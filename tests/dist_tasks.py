"""Tasks for the multi-process tests (``--task dist_tasks:killer``): digits whose rank
``$AMPKIT_TEST_KILL_RANK`` SIGKILLs itself when asked for micro-batch ``$AMPKIT_TEST_KILL_AT``,
after writing the kill time to ``$AMPKIT_TEST_KILL_STAMP``. Without the variables: plain digits."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from ampkit.tasks import Task, TaskSpec, build_task


def killer(spec: TaskSpec) -> Task:
    """digits, with a rank that dies mid-run when the environment says so."""
    task = build_task("digits", spec)
    fetch = task.train_batch
    at = os.environ.get("AMPKIT_TEST_KILL_AT")
    doomed = at is not None and os.environ.get("RANK") == os.environ.get("AMPKIT_TEST_KILL_RANK", "1")

    def batch(i: int):  # type: ignore[no-untyped-def]
        if doomed and i == int(at):  # type: ignore[arg-type]
            Path(os.environ["AMPKIT_TEST_KILL_STAMP"]).write_text(repr(time.time()))
            os.kill(os.getpid(), signal.SIGKILL)
        return fetch(i)

    task.train_batch = batch
    return task


def halves(spec: TaskSpec) -> Task:
    """tinygpt (small) whose micro-batch ``i`` is half ``i % 2`` of tinygpt's global batch ``i // 2`` of
    twice the size: one rank with ``--accumulate 2`` then reads exactly what 2 ranks read per step."""
    task = build_task("tinygpt", TaskSpec(spec.seed, 2 * spec.batch_size, spec.device, "small"))
    fetch, half = task.train_batch, spec.batch_size

    def batch(i: int):  # type: ignore[no-untyped-def]
        inputs, targets = fetch(i // 2)
        part = slice((i % 2) * half, (i % 2 + 1) * half)
        return inputs[part], targets[part]

    task.train_batch = batch
    return task
