"""Conversion across worker processes, with output byte-identical to one process.

Two ways, chosen by :mod:`ampkit.data.convert`:

* **shards** (at least as many shards left as workers): each worker encodes *and writes* whole
  shards, hashing its own bytes, so nothing but small progress messages crosses processes and
  the work scales with the cores. Shard contents depend only on the plan, so which worker wrote
  a shard, and in which order shards complete, changes no byte.
* **samples** (fewer shards than workers): workers encode samples, this process writes them in
  order (at most ``2 * workers`` in flight).

Workers are forked where the platform can (a spawned worker re-imports torch), ignore Ctrl-C
(this process stops them between samples, and each removes its unfinished shard), use one torch
thread each, and on Linux die with this process (``kill -9`` of the parent leaves no writer behind).
"""

from __future__ import annotations

import ctypes
import os
import queue
import signal
import sys
from collections import deque
from collections.abc import Callable, Generator
from concurrent.futures import FIRST_COMPLETED, CancelledError, Future, ProcessPoolExecutor, wait
from multiprocessing import get_all_start_methods, get_context
from pathlib import Path
from typing import Any

from .codec import CodecOptions
from .scratch import Scratch
from .shardjob import Cancelled, encode_sample, write_shard
from .sources import Source

_STATE: dict[str, Any] = {}
"""Per worker process: the stop flag, the progress queue, the parent's pid and its reused buffers."""


def _context() -> Any:
    return get_context("fork" if "fork" in get_all_start_methods() else "spawn")


def _init_worker(stop: Any, progress: Any, parent: int) -> None:
    """Worker start: shared flag and queue, no Ctrl-C, one torch thread, die with the parent (Linux)."""
    _STATE.update(stop=stop, progress=progress, parent=parent, scratch=Scratch())
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
    import torch

    torch.set_num_threads(1)


def _stopped() -> bool:
    return bool(_STATE["stop"].value) or os.getppid() != _STATE["parent"]


def _shard_task(
    out: Path, number: int, members: list[tuple[int, Source]], codec: CodecOptions, delay: float
) -> tuple[Path, dict[str, Any], list[dict[str, Any]]]:
    return write_shard(
        out, number, members, codec, delay, _STATE["progress"].put, _stopped, _STATE["scratch"]
    )


def _sample_task(index: int, source: Source, codec: CodecOptions) -> tuple[str, Any, bytes]:
    return encode_sample(index, source, codec, _STATE["scratch"])  # pickled before the next task


def _pool(workers: int, stop: Any = None, progress: Any = None) -> ProcessPoolExecutor:
    import torch  # noqa: F401 (imported once here, so that forked workers need not import it each)

    ctx = _context()
    stop = stop if stop is not None else ctx.Value("b", 0, lock=False)
    return ProcessPoolExecutor(
        max_workers=workers, mp_context=ctx, initializer=_init_worker, initargs=(stop, progress, os.getpid())
    )


def run_shards(
    jobs: list[tuple[int, list[tuple[int, Source]]]],
    out: Path,
    codec: CodecOptions,
    workers: int,
    delay: float,
    on_sample: Callable[[int], None] | None,
    on_shard: Callable[[Path, dict[str, Any], list[dict[str, Any]]], None],
) -> None:
    """Write shards ``jobs`` (number, members) with ``workers`` processes; ``on_shard`` gets each result.

    The first failure stops the others between samples (their unfinished shards are removed);
    shards completed meanwhile still reach ``on_shard`` (so a refused run can undo them); then
    the failure is raised.
    """
    ctx = _context()
    stop, progress = ctx.Value("b", 0, lock=False), ctx.Queue()

    def drain() -> None:
        while True:
            try:
                nbytes = progress.get_nowait()
            except queue.Empty:
                return
            if on_sample is not None:
                on_sample(nbytes)

    failure: list[BaseException] = []

    def fail(err: BaseException, others: set[Future[Any]]) -> None:
        if not failure:  # the first failure is raised; the others are its consequences
            failure.append(err)
            stop.value = 1
            for other in others:
                other.cancel()

    with _pool(workers, stop, progress) as pool:
        todo: set[Future[Any]] = {
            pool.submit(_shard_task, out, number, members, codec, delay) for number, members in jobs
        }
        while todo:
            try:  # Ctrl-C can arrive anywhere in here: it stops the workers, then it is raised
                wait(todo, timeout=0.05, return_when=FIRST_COMPLETED)
                drain()
                for future in [f for f in todo if f.done()]:
                    todo.discard(future)
                    try:
                        result = future.result()
                    except (Cancelled, CancelledError):
                        continue
                    except BaseException as err:
                        fail(err, todo)
                        continue
                    on_shard(*result)
            except BaseException as err:
                fail(err, todo)
    drain()  # what the workers' queue threads flushed as they exited
    if failure:
        raise failure[0]


def encoded_samples(
    jobs: list[int], sources: list[Source], codec: CodecOptions, workers: int
) -> Generator[tuple[str, Any, bytes], None, None]:
    """Encoded samples for ``jobs`` in order from ``workers`` processes; at most ``2 * workers`` in flight."""
    with _pool(workers) as pool:
        pending: deque[Future[tuple[str, Any, bytes]]] = deque()
        todo = iter(jobs)
        for i in todo:
            pending.append(pool.submit(_sample_task, i, sources[i], codec))
            if len(pending) >= 2 * workers:
                break
        try:
            while pending:
                result = pending.popleft().result()
                nxt = next(todo, None)
                if nxt is not None:
                    pending.append(pool.submit(_sample_task, nxt, sources[nxt], codec))
                yield result
        finally:
            for future in pending:
                future.cancel()
