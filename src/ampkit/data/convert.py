"""``convert``: arrays -> reproducible, resumable tar shards of 2-byte samples.

The plan (which sample goes into which shard under which key) depends only on the inputs and
the shard bounds, never on timing, so a rerun after an interruption finds the same shards:
complete ones (final name) are checked against the plan and skipped, orphaned temporaries are
removed, and the rest is written again. A shard's bytes depend only on its samples, so they do
not depend on the number of workers either (:mod:`ampkit.data.parallel`: workers write whole
shards, or encode samples for one writer; :mod:`ampkit.data.convert_write` chooses). The
manifest is built from what the writers recorded (sha256 of every shard taken while writing
it). What ``--out`` may hold, its lock (one convert per folder) and how a refused run is undone
is :mod:`ampkit.data.resume`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UsageError
from . import resume
from .codec import CodecOptions
from .convert_write import DELAY_ENV, Written, write_plan
from .convert_write import sample_delay as sample_delay
from .format import read_shard_entry, shard_name, write_manifest
from .resume import SETTINGS_NAME
from .shardjob import encode_sample
from .sources import Source
from .summary import build_manifest

__all__ = [
    "DELAY_ENV",
    "SETTINGS_NAME",
    "ConvertOptions",
    "ConvertResult",
    "convert",
    "encode_sample",
    "plan_shards",
]

_HEADER_ESTIMATE = 3 * 512 + 2048
"""Bytes a sample adds to a shard beyond its ``.bin`` data (tar headers, JSON, padding), for planning."""
WORKERS_PER_CPU = 4
"""``workers`` allowed per CPU: more only oversubscribe, and thousands of processes exhaust the machine."""


def max_workers() -> int:
    """The most conversion processes allowed on this machine (:data:`WORKERS_PER_CPU` per CPU)."""
    return WORKERS_PER_CPU * (os.cpu_count() or 1)


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
        cap = max_workers()
        if self.workers > cap:
            raise UsageError(
                f"--workers {self.workers}: more than {cap} ({WORKERS_PER_CPU} per CPU of this machine's "
                f"{cap // WORKERS_PER_CPU}); valid: a whole number in 1..{cap}, e.g. {cap // WORKERS_PER_CPU}"
            )


@dataclass
class ConvertResult:
    """What a run did."""

    manifest: dict[str, Any]
    """The manifest written (covers all shards, also those of an earlier interrupted run)."""
    shards_written: int
    """Shards written by this run."""
    shards_skipped: int
    """Complete shards found from an earlier run and kept."""
    shards_replaced: int
    """Complete shards of an earlier run written again because their sources changed since (in
    ``shards_written``)."""
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


def _manifest(state: resume.OutState, plan: list[list[int]], written: Written) -> dict[str, Any]:
    """The manifest: shards written now as their writers recorded them (sha256 taken while writing),
    shards kept from an interrupted run read back from disk (their hash was never recorded)."""
    shards: list[dict[str, Any]] = []
    metas: list[dict[str, Any]] = []
    for number in range(len(plan)):
        found = written.shards.get(number)
        if found is None:
            found = read_shard_entry(state.out / shard_name(number))
        shards.append(found[0])
        metas.extend(found[1])
    manifest = build_manifest(shards, metas)
    write_manifest(state.out, manifest)
    return manifest


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
    state = resume.open_out(Path(opts.out), plan, sources, settings)  # holds out's lock from here on
    written = Written(state)
    try:
        if on_sample is not None:  # samples kept from an earlier run count as done, with 0 bytes converted
            for n in sorted(state.done):
                for _ in plan[n]:
                    on_sample(0)
        start = time.perf_counter()
        orphans = resume.begin(state)
        write_plan(sources, opts.codec, opts.workers, plan, written, on_sample)
        seconds = time.perf_counter() - start
        manifest = _manifest(state, plan, written)
    except UsageError:
        resume.undo(state)
        raise
    except BaseException:
        resume.release(state)
        raise
    resume.finish(state)
    jobs = [i for n, members in enumerate(plan) if n not in state.done for i in members]
    read = sum(sources[i].numel * np.dtype(sources[i].dtype).itemsize for i in jobs)
    return ConvertResult(
        manifest,
        len(state.written),
        len(state.done),
        len(state.stale),
        orphans,
        read,
        sum(sources[i].numel * 4 for i in jobs),
        seconds,
    )
