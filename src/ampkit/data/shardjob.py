"""What one conversion worker does: encode a sample, or encode and write a whole shard.

A shard's bytes depend only on its samples (the plan), never on which process wrote it or
when, so shards written by different workers at the same time equal those of one worker.
"""

from __future__ import annotations

import json
import sys
import time
import zipfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from .codec import CodecOptions, SampleError, encode
from .format import dumps, sample_key, shard_name
from .scratch import Scratch
from .shardwriter import ShardWriter
from .sourceread import load
from .sources import Source


class Cancelled(Exception):
    """Another worker failed or the run was interrupted: this shard was dropped unfinished."""


def encode_sample(
    index: int, source: Source, codec: CodecOptions, scratch: Scratch | None = None
) -> tuple[str, np.ndarray, bytes]:
    """``(key, stored array (little-endian, C order), json bytes)`` of one sample (in ``scratch``'s
    buffers when given: valid until the next sample is encoded with it)."""
    key = sample_key(index)
    try:
        array, slope, intercept, meta = load(source, scratch)
    except (ValueError, EOFError, zipfile.BadZipFile) as err:  # changed or damaged since discover()
        raise SampleError(f"sample {key} ({source.path}): cannot be read ({err})") from None
    enc = encode(array, codec, f"{key} ({source.path})", scratch)
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
        "range": list(enc.range) if enc.range is not None else [None, None],
        "error": {"max_abs": enc.max_abs, "max_rel": enc.max_rel},
        "choice": {"dtype": enc.dtype, "reason": enc.reason},
        "overflow_clipped": enc.clipped,
        "meta": meta,
    }
    if enc.nonfinite:  # NaN/Inf kept (--on-nonfinite keep): counted here, absent for clean data
        info["nonfinite"] = enc.nonfinite
    data = enc.data if sys.byteorder == "little" else enc.data.astype(enc.data.dtype.newbyteorder("<"))
    return key, np.ascontiguousarray(data), dumps(info)


#: One encoded sample on its way into a shard: key, stored array, JSON bytes, float32 input bytes.
Encoded = tuple[str, Any, bytes, int]


def write_encoded(
    out: Path,
    number: int,
    samples: Iterable[Encoded],
    delay: float = 0.0,
    on_sample: Callable[[int], None] | None = None,
) -> tuple[Path, dict[str, Any], list[dict[str, Any]]]:
    """Write already encoded ``samples`` into shard ``number``: ``(path, manifest entry, metas)``.

    ``on_sample(float32 bytes)`` follows each sample. Any failure (a full disk, an interrupt, an
    error raised by ``samples`` itself) removes the unfinished temporary shard.
    """
    writer = ShardWriter(out, number)
    metas: list[dict[str, Any]] = []
    try:
        for key, data, json_bytes, input_bytes in samples:
            writer.add(key, data, json_bytes)
            metas.append(json.loads(json_bytes))
            if on_sample is not None:
                on_sample(input_bytes)
            if delay:
                time.sleep(delay)
        path = writer.close()
    except BaseException:
        writer.abort()  # a full disk or an interrupt leaves no temporary shard
        raise
    return path, writer.entry(), metas


def write_shard(
    out: Path,
    number: int,
    members: list[tuple[int, Source]],
    codec: CodecOptions,
    delay: float = 0.0,
    on_sample: Callable[[int], None] | None = None,
    stopped: Callable[[], bool] | None = None,
    scratch: Scratch | None = None,
) -> tuple[Path, dict[str, Any], list[dict[str, Any]]]:
    """Encode ``members`` (global index, source) into shard ``number``: ``(path, manifest entry, metas)``.

    ``stopped()`` is asked before each sample and drops the shard (:class:`Cancelled`). ``scratch``:
    buffers reused from sample to sample (each sample is written before the next is read).
    """

    def samples() -> Iterator[Encoded]:
        for index, source in members:
            if stopped is not None and stopped():
                raise Cancelled(shard_name(number))
            yield (*encode_sample(index, source, codec, scratch), source.numel * 4)

    return write_encoded(out, number, samples(), delay, on_sample)
