"""``convert``: arrays -> reproducible, resumable tar shards of 2-byte samples.

The plan (which sample goes into which shard under which key) depends only on the inputs and
the shard bounds, never on timing, so a rerun after an interruption finds the same shards:
complete ones (final name) are checked against the plan and skipped, orphaned temporaries are
removed, and the rest is written again. Workers encode samples in parallel; the parent writes
them in order, so shards do not depend on the number of workers either.
"""

from __future__ import annotations

import json
import os
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from multiprocessing import get_all_start_methods, get_context
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UsageError
from .codec import CodecOptions, encode, value_range
from .format import TMP_RE, dumps, read_index, read_member, rebuild_manifest, sample_key, shard_name
from .shardwriter import ShardWriter
from .sources import Source, load

SETTINGS_NAME = ".convert.json"
"""Hidden file in the output folder holding the settings a resumed run must match."""
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
    array, slope, intercept, meta = load(source)
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


def _check_settings(out: Path, opts: ConvertOptions) -> None:
    """Record the settings that shape the shards in ``DIR/.convert.json``; refuse a rerun with others.

    Without this, resuming with another ``--dtype`` (say) would keep shards made the old way
    next to new ones. The worker count is left out: it does not change a byte.
    """
    codec: dict[str, Any] = asdict(opts.codec)
    settings: dict[str, Any] = {
        "codec": codec,
        "shard_size": opts.shard_size,
        "samples_per_shard": opts.samples_per_shard,
    }
    path = out / SETTINGS_NAME
    if path.exists():
        before = json.loads(path.read_text(encoding="utf-8"))
        if before != json.loads(dumps(settings)):
            changed = sorted(
                k for k in {**before["codec"], **codec} if before["codec"].get(k) != codec.get(k)
            )
            changed += [k for k in ("shard_size", "samples_per_shard") if before.get(k) != settings[k]]
            raise UsageError(
                f"{out} was written with other settings ({', '.join(changed)}); rerun with the "
                "same options to resume, or use an empty --out"
            )
        return
    tmp = out / f"{SETTINGS_NAME}.tmp"
    tmp.write_bytes(dumps(settings))
    os.replace(tmp, path)


def _check_existing(out: Path, plan: list[list[int]], sources: list[Source]) -> set[int]:
    """Shard numbers already complete; raises when ``out`` holds shards of another conversion."""
    done: set[int] = set()
    for number, members in enumerate(plan):
        path = out / shard_name(number)
        if not path.exists():
            continue
        try:
            index = read_index(path)
            with open(path, "rb") as fh:
                first = json.loads(read_member(fh, index["samples"][0]["json"])) if members else {}
        except (OSError, ValueError, KeyError, IndexError) as err:
            raise UsageError(
                f"{path}: unreadable shard from an earlier run ({err}); remove it or use a new --out"
            ) from err
        keys = [e["key"] for e in index["samples"]]
        if keys != [sample_key(i) for i in members] or first.get("source") != sources[members[0]].path:
            raise UsageError(f"{out} holds {path.name} from a different conversion; use an empty --out")
        done.add(number)
    return done


def _encoded(
    jobs: list[int], sources: list[Source], codec: CodecOptions, workers: int
) -> Iterator[tuple[str, bytes, bytes]]:
    """Encoded samples for ``jobs`` in order; at most ``2 * workers`` in flight to bound memory."""
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


def convert(
    sources: list[Source], opts: ConvertOptions, on_sample: Callable[[int], None] | None = None
) -> ConvertResult:
    """Convert ``sources`` into ``opts.out``; ``on_sample(float32_bytes)`` follows each sample (0 if kept)."""
    out = Path(opts.out)
    out.mkdir(parents=True, exist_ok=True)
    orphans = [p for p in out.iterdir() if TMP_RE.match(p.name)]
    for p in orphans:
        p.unlink()
    plan = plan_shards(sources, opts.shard_size, opts.samples_per_shard)
    _check_settings(out, opts)
    done = _check_existing(out, plan, sources)
    jobs = [i for n, members in enumerate(plan) if n not in done for i in members]
    if on_sample is not None:  # samples kept from an earlier run count as done, with 0 bytes converted
        for n in sorted(done):
            for _ in plan[n]:
                on_sample(0)
    delay = float(os.environ.get(DELAY_ENV, "0") or 0)
    start = time.perf_counter()
    stream = _encoded(jobs, sources, opts.codec, opts.workers)
    written = 0
    for number, members in enumerate(plan):
        if number in done:
            continue
        writer = ShardWriter(out, number)
        try:
            for i in members:
                key, bin_bytes, json_bytes = next(stream)
                writer.add(key, bin_bytes, json_bytes)
                if on_sample is not None:
                    on_sample(sources[i].numel * 4)
                if delay:
                    time.sleep(delay)
        except BaseException:
            writer.abort()
            raise
        writer.close()
        written += 1
    seconds = time.perf_counter() - start
    manifest = rebuild_manifest(out)
    read = sum(sources[i].numel * np.dtype(sources[i].dtype).itemsize for i in jobs)
    return ConvertResult(
        manifest, written, len(done), len(orphans), read, sum(sources[i].numel * 4 for i in jobs), seconds
    )
