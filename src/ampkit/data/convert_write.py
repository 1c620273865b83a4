"""The write phase of ``convert``: every shard of the plan not yet done, in this process or in workers.

With at least as many shards left as workers, each worker writes whole shards; with fewer,
workers encode samples and this process writes them in order; with one worker, this process
does both with one set of buffers (:mod:`ampkit.data.parallel` runs the workers). ``Written``
records each finished shard (first in ``resume.OutState.written``, so that a refused run can
undo it) for the manifest :mod:`ampkit.data.convert` builds. ``$AMPKIT_CONVERT_SAMPLE_DELAY``
(:func:`sample_delay`) is the test hook that slows each sample.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import UsageError
from . import parallel, resume
from .codec import CodecOptions
from .scratch import Scratch
from .shardjob import write_encoded, write_shard
from .sources import Source

DELAY_ENV = "AMPKIT_CONVERT_SAMPLE_DELAY"
"""Testing hook: seconds to sleep after writing each sample (lets a test kill a run mid-way)."""


def sample_delay() -> float:
    """``$AMPKIT_CONVERT_SAMPLE_DELAY`` seconds (a test hook slowing each sample), 0 when unset;
    anything but a finite number in 0..60 is a :class:`UsageError` naming the variable."""
    import math

    text = os.environ.get(DELAY_ENV, "").strip()
    try:
        value = float(text) if text else 0.0
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and 0 <= value <= 60):
        raise UsageError(
            f"{DELAY_ENV}={text!r}: not a number of seconds in 0..60; valid: e.g. 0.01, or unset"
        )
    return value


class Written:
    """Manifest entries and sample metas of the shards written so far, by shard number."""

    def __init__(self, state: resume.OutState):
        self.state = state
        self.shards: dict[int, tuple[dict[str, Any], list[dict[str, Any]]]] = {}

    def add(self, path: Path, entry: dict[str, Any], metas: list[dict[str, Any]]) -> None:
        self.state.written.append(path)  # first, so that a refused run can undo it
        self.shards[int(path.name[len("shard-") : -len(".tar")])] = (entry, metas)


def _write_in_order(
    jobs: list[int],
    sources: list[Source],
    codec: CodecOptions,
    max_workers: int,
    plan: list[list[int]],
    written: Written,
    on_sample: Callable[[int], None] | None,
    delay: float,
) -> None:
    """Workers encode samples, this process writes the shards in order (fewer shards left than workers)."""
    stream = parallel.encoded_samples(jobs, sources, codec, min(max_workers, len(jobs)))
    try:
        for number, members in enumerate(plan):
            if number in written.state.done:
                continue
            encoded = ((*next(stream), sources[i].numel * 4) for i in members)
            written.add(*write_encoded(written.state.out, number, encoded, delay, on_sample))
    finally:
        stream.close()  # stops the worker pool now, also when a write failed


def write_plan(
    sources: list[Source],
    codec: CodecOptions,
    max_workers: int,
    plan: list[list[int]],
    written: Written,
    on_sample: Callable[[int], None] | None,
) -> None:
    """Encode and write every shard of ``plan`` not in ``state.done``, in this process or in workers.

    With at least as many shards left as workers, each worker writes whole shards (nothing but
    progress crosses processes, so it scales with the cores); with fewer, workers encode samples
    and this process writes them. Either way the bytes equal one process's.
    """
    todo = [
        (n, [(i, sources[i]) for i in members])
        for n, members in enumerate(plan)
        if n not in written.state.done
    ]
    delay = sample_delay()
    workers = min(max_workers, sum(len(m) for _, m in todo))
    if workers > 1 and len(todo) >= workers:
        parallel.run_shards(todo, written.state.out, codec, workers, delay, on_sample, written.add)
    elif workers > 1:
        jobs = [i for _, members in todo for i, _ in members]
        _write_in_order(jobs, sources, codec, max_workers, plan, written, on_sample, delay)
    else:
        scratch = Scratch()  # one set of buffers for every sample
        for number, members in todo:
            shard = write_shard(written.state.out, number, members, codec, delay, on_sample, None, scratch)
            written.add(*shard)
