"""``convert``: arrays -> reproducible, resumable tar shards of 2-byte samples.

The plan (which sample goes into which shard under which key) depends only on the inputs and
the shard bounds, never on timing, so a rerun after an interruption finds the same shards:
complete ones (final name) are checked against the plan and skipped, orphaned temporaries are
removed, and the rest is written again. Workers encode samples in parallel; the parent writes
them in order, so shards do not depend on the number of workers either. What ``--out`` may hold
and how a refused run is undone is :mod:`ampkit.data.resume`.
"""

from __future__ import annotations

import os
import time
import zipfile
from collections import deque
from collections.abc import Callable, Generator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from multiprocessing import get_all_start_methods, get_context
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UsageError
from . import resume
from .codec import CodecOptions, SampleError, encode, value_range
from .format import dumps, rebuild_manifest, sample_key
from .resume import SETTINGS_NAME
from .shardwriter import ShardWriter
from .sources import Source, load

__all__ = ["DELAY_ENV", "SETTINGS_NAME", "ConvertOptions", "ConvertResult", "convert", "plan_shards"]

DELAY_ENV = "AMPKIT_CONVERT_SAMPLE_DELAY"
"""Testing hook: seconds to sleep after writing each sample (lets a test kill a run mid-way)."""
_HEADER_ESTIMATE = 3 * 512 + 2048
"""Bytes a sample adds to a shard beyond its ``.bin`` data (tar headers, JSON, padding), for planning."""


@dataclass(frozen=True)
class ConvertOptions:
    """What ``convert`` writes and how."""

    out: Path
    """Output folder (created if missing)."""
    codec: CodecOptions = field(default_factory=CodecOptions)
    """How each sample is stored."""
    shard_size: int = 1 << 30
    """Upper bound of a shard's bytes (a single larger sample gets a shard of its own)."""
    samples_per_shard: int = 1000
    """Upper bound of samples per shard."""
    workers: int = 1
    """Processes encoding samples (1: in this process)."""

    def __post_init__(self) -> None:
        for name, low in (("shard_size", 1), ("samples_per_shard", 1), ("workers", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise UsageError(f"{name} {value!r}: must be a whole number >= {low}")


@dataclass
class ConvertResult:
    """What a run did."""

    manifest: dict[str, Any]
    """The manifest written (covers all shards, also those of an earlier interrupted run)."""
    shards_written: int
    """Shards written by this run."""
    shards_skipped: int
    """Complete shards found from an earlier run and kept."""
    orphans_removed: int
    """Temporaries of an interrupted run removed."""
    source_bytes_read: int
    """Source bytes this run converted."""
    float32_bytes_read: int
    """The same data counted as float32 (throughput unit)."""
    seconds: float
    """Wall time of the conversion work."""


def plan_shards(sources: list[Source], shard_size: int, samples_per_shard: int) -> list[list[int]]:
    """Sample indices per shard, filled in input order up to either bound."""
    if shard_size <= 0 or samples_per_shard <= 0:
        raise UsageError("--shard-size and --samples-per-shard must be positive")
    shards: list[list[int]] = [[]]
    size = 0
    for i, src in enumerate(sources):
        need = src.numel * 2 + _HEADER_ESTIMATE
        current = shards[-1]
        if current and (len(current) >= samples_per_shard or size + need > shard_size):
            shards.append([])
            size = 0
        shards[-1].append(i)
        size += need
    return shards if shards[0] else []


def encode_sample(index: int, source: Source, codec: CodecOptions) -> tuple[str, bytes, bytes]:
    """``(key, bin bytes, json bytes)`` of one sample (runs in a worker process)."""
    key = sample_key(index)
    try:
        array, slope, intercept, meta = load(source)
    except (ValueError, EOFError, zipfile.BadZipFile) as err:  # changed or damaged since discover()
        raise SampleError(f"sample {key} ({source.path}): cannot be read ({err})") from None
    enc = encode(array, codec, f"{key} ({source.path})")
    rng = value_range(array)
    info = {
        "key": key,
        "shape": list(array.shape),
        "dtype": enc.dtype,
        "source_dtype": array.dtype.name,
        "offset": enc.offset,
        "slope": slope,
        "intercept": intercept,
        "source": source.path,
        "array_key": source.array_key,
        "range": list(rng) if rng is not None else [None, None],
        "error": {"max_abs": enc.max_abs, "max_rel": enc.max_rel},
        "choice": {"dtype": enc.dtype, "reason": enc.reason},
        "overflow_clipped": enc.clipped,
        "meta": meta,
    }
    return key, enc.data.astype(enc.data.dtype.newbyteorder("<"), copy=False).tobytes(), dumps(info)


def _encoded(
    jobs: list[int], sources: list[Source], codec: CodecOptions, workers: int
) -> Generator[tuple[str, bytes, bytes], None, None]:
    """Encoded samples for ``jobs`` in order; at most ``2 * workers`` in flight to bound memory."""
    workers = min(workers, len(jobs))  # no idle processes (and none at all for a finished resume)
    if workers <= 1:
        for i in jobs:
            yield encode_sample(i, sources[i], codec)
        return
    # fork where there is one: a spawned worker would re-import ampkit, and with it torch (seconds
    # per worker). Forking is safe here because the parent runs no threads meanwhile (the CLI's
    # progress bar refreshes on each sample, without its own thread) and workers only use numpy.
    method = "fork" if "fork" in get_all_start_methods() else "spawn"
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context(method)) as pool:
        pending: deque[Future[tuple[str, bytes, bytes]]] = deque()
        todo = iter(jobs)
        for i in todo:
            pending.append(pool.submit(encode_sample, i, sources[i], codec))
            if len(pending) >= 2 * workers:
                break
        while pending:
            result = pending.popleft().result()
            nxt = next(todo, None)
            if nxt is not None:
                pending.append(pool.submit(encode_sample, nxt, sources[nxt], codec))
            yield result


def _write(
    sources: list[Source],
    opts: ConvertOptions,
    plan: list[list[int]],
    state: resume.OutState,
    on_sample: Callable[[int], None] | None,
) -> None:
    """Encode and write every shard of ``plan`` not in ``state.done``; completed ones go to ``state.written``."""
    jobs = [i for n, members in enumerate(plan) if n not in state.done for i in members]
    delay = float(os.environ.get(DELAY_ENV, "0") or 0)
    stream = _encoded(jobs, sources, opts.codec, opts.workers)
    try:
        for number, members in enumerate(plan):
            if number in state.done:
                continue
            writer = ShardWriter(state.out, number)
            try:
                for i in members:
                    key, bin_bytes, json_bytes = next(stream)
                    writer.add(key, bin_bytes, json_bytes)
                    if on_sample is not None:
                        on_sample(sources[i].numel * 4)
                    if delay:
                        time.sleep(delay)
                state.written.append(writer.close())
            except BaseException:
                writer.abort()  # a full disk or an interrupt leaves no temporary shard
                raise
    finally:
        stream.close()  # stops the worker pool now, also when a write failed


def convert(
    sources: list[Source], opts: ConvertOptions, on_sample: Callable[[int], None] | None = None
) -> ConvertResult:
    """Convert ``sources`` into ``opts.out``; ``on_sample(float32_bytes)`` follows each sample (0 if kept).

    Everything that can be refused from the inputs, options and ``out`` is checked before the
    first write. A sample refused during the run (NaN, overflow, tolerance: a
    :class:`~ampkit.data.codec.SampleError`) leaves ``out`` as it was found. Any other failure (a
    full disk, an interrupt) keeps the complete shards, so the same command resumes; the
    unfinished shard is removed.
    """
    plan = plan_shards(sources, opts.shard_size, opts.samples_per_shard)
    settings = {
        "codec": asdict(opts.codec),
        "shard_size": opts.shard_size,
        "samples_per_shard": opts.samples_per_shard,
    }
    state = resume.inspect_out(Path(opts.out), plan, sources, settings)
    if on_sample is not None:  # samples kept from an earlier run count as done, with 0 bytes converted
        for n in sorted(state.done):
            for _ in plan[n]:
                on_sample(0)
    start = time.perf_counter()
    try:
        orphans = resume.begin(state)
        _write(sources, opts, plan, state, on_sample)
    except UsageError:
        resume.undo(state)
        raise
    seconds = time.perf_counter() - start
    manifest = rebuild_manifest(state.out)
    jobs = [i for n, members in enumerate(plan) if n not in state.done for i in members]
    read = sum(sources[i].numel * np.dtype(sources[i].dtype).itemsize for i in jobs)
    return ConvertResult(
        manifest,
        len(state.written),
        len(state.done),
        orphans,
        read,
        sum(sources[i].numel * 4 for i in jobs),
        seconds,
    )
