"""What a valid manifest, shard index and sample JSON look like, checked before anything is read by them.

Shard folders come from elsewhere too (a colleague, a download, a half-copied disk), so every
number in them that says where to read or how much to allocate is checked first: spans are
pairs of non-negative integers that end inside their file, counts match their lists, shard
names are plain ``shard-NNNNNN.tar`` names (no path can point outside the folder), and JSON
nesting cannot exhaust the stack. Each check raises ``ValueError`` naming the field.
"""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np

from .jsontext import parse_json as parse_json

SHARD_RE = re.compile(r"shard-(\d{6})\.tar\Z")
"""Matches final shard file names and captures the shard number."""
_SHA256_RE = re.compile(r"[0-9a-f]{64}\Z")
_XXH3_RE = re.compile(r"[0-9a-fA-F]{16}\Z")
_SOURCE_KINDS = "iuf"
"""numpy dtype kinds a source may have had (integer, unsigned, float)."""
STORED_ITEMSIZE = {"float16": 2, "bfloat16": 2, "int16": 2}
"""Stored dtype names (a sample JSON's ``dtype``) and their bytes per value."""
_FLOAT32_MAX = float(np.finfo(np.float32).max)


MAX_DIM = 1 << 48
"""Largest dimension, and largest element count, of a sample's shape (far beyond any real array,
well inside int64 where numpy and torch count elements)."""


def _obj(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValueError(f"{where} is {type(value).__name__}, not an object")
    return value


def _list(value: Any, where: str) -> list[Any]:
    if not isinstance(value, list):
        raise ValueError(f"{where} is {type(value).__name__}, not a list")
    return value


def count(value: Any, where: str) -> int:
    """A non-negative integer (``True`` is not one)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{where} is {value!r}, not a non-negative integer")
    return value


def number(value: Any, where: str) -> float:
    """A finite JSON number (``True`` is not one)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{where} is {value!r}, not a finite number")
    return float(value)


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{where} is {value!r}, not a non-empty string")
    return value


def span(value: Any, where: str) -> list[int]:
    """``[data offset, size]``: two non-negative integers."""
    if not isinstance(value, list | tuple) or len(value) != 2:
        raise ValueError(f"{where} is {value!r}, not [offset, size]")
    return [count(value[0], f"{where}[0]"), count(value[1], f"{where}[1]")]


def entry(value: Any, where: str) -> dict[str, Any]:
    """One sample's index entry: ``key``, ``bin`` and ``json`` spans, optional ``xxh3``, ``crc32c`` and ``sha256``."""
    e = _obj(value, where)
    key = _text(e.get("key"), f"{where}.key")
    if "/" in key or key.startswith("."):
        raise ValueError(f"{where}.key {key!r} is not a sample key")
    span(e.get("bin"), f"{where}.bin")
    span(e.get("json"), f"{where}.json")
    digest = e.get("sha256")
    if digest is not None and not (isinstance(digest, str) and _SHA256_RE.match(digest)):
        raise ValueError(f"{where}.sha256 is {digest!r}, not a hex sha256")
    xxh3 = e.get("xxh3")
    if xxh3 is not None and not (isinstance(xxh3, str) and _XXH3_RE.match(xxh3)):
        raise ValueError(f"{where}.xxh3 is {xxh3!r}, not an XXH3 (16 hex digits)")
    crc = e.get("crc32c")
    if crc is not None and (type(crc) is not int or not 0 <= crc < 1 << 32):
        raise ValueError(f"{where}.crc32c is {crc!r}, not a CRC-32C (integer in [0, 2**32))")
    return e


def _entries(value: Any, declared: Any, where: str) -> list[dict[str, Any]]:
    samples = [entry(e, f"{where}.samples[{i}]") for i, e in enumerate(_list(value, f"{where}.samples"))]
    if count(declared, f"{where}.count") != len(samples):
        raise ValueError(f"{where}.count is {declared}, but {len(samples)} samples are listed")
    return samples


def index(value: Any, where: str) -> dict[str, Any]:
    """A shard's ``__index__`` member: ``samples`` (entries) and a matching ``count``."""
    idx = _obj(value, where)
    _entries(idx.get("samples"), idx.get("count"), where)
    return idx


def manifest(value: Any) -> dict[str, Any]:
    """``manifest.json`` (its ``format`` checked by the caller): every shard entry and sample entry."""
    m = _obj(value, "the manifest")
    names: set[str] = set()
    for i, s in enumerate(_list(m.get("shards"), "shards")):
        where = f"shards[{i}]"
        shard = _obj(s, where)
        name = shard.get("name")
        if not isinstance(name, str) or not SHARD_RE.match(name):
            raise ValueError(f"{where}.name is {name!r}, not a shard-NNNNNN.tar name")
        if name in names:
            raise ValueError(f"{where}.name {name} is listed twice")
        names.add(name)
        digest = shard.get("sha256")
        if not (isinstance(digest, str) and _SHA256_RE.match(digest)):
            raise ValueError(f"{where}.sha256 is {digest!r}, not a hex sha256")
        count(shard.get("bytes"), f"{where}.bytes")
        _entries(shard.get("samples"), shard.get("count"), where)
    return m


def spans_within(samples: list[dict[str, Any]], size: int, where: str) -> None:
    """Every span of ``samples`` ends inside a file of ``size`` bytes."""
    for e in samples:
        for kind in ("bin", "json"):
            offset, length = e[kind]
            if offset + length > size:
                raise ValueError(
                    f"{where}: sample {e['key']} {kind} [{offset}, {length}] ends past the end of the "
                    f"file ({size} bytes; truncated?)"
                )


def float32_number(value: Any, where: str) -> float:
    """A finite number within float32's range (an offset, slope or intercept applied in float32)."""
    found = number(value, where)
    if abs(found) > _FLOAT32_MAX:
        raise ValueError(f"{where} is {value!r}, beyond the float32 range ±{_FLOAT32_MAX:g}")
    return found


def shape(value: Any, where: str) -> list[int]:
    """A list of dimensions, each and their product at most :data:`MAX_DIM` (2**48)."""
    dims = [count(n, f"{where}[{i}]") for i, n in enumerate(_list(value, where))]
    total = 1
    for i, n in enumerate(dims):
        if n > MAX_DIM:
            raise ValueError(f"{where}[{i}] is {n}, more than 2**48")
        total *= n
        if total > MAX_DIM:
            raise ValueError(f"{where} {dims} holds more than 2**48 values")
    return dims


def nbytes(shape: list[int], dtype_size: int) -> int:
    """Bytes of an array of ``shape`` (exact, in Python integers: no int64 wrap-around)."""
    return math.prod(shape) * dtype_size


def sample_meta(value: Any, where: str, full: bool = False) -> dict[str, Any]:
    """A sample's JSON: ``key``, ``shape``, ``dtype`` and numeric ``offset``/``slope``/``intercept``.

    ``full`` also checks the accounting fields a summary reads: ``source_dtype`` (a numeric numpy
    dtype name), ``error`` {``max_abs``, ``max_rel``}, ``choice.reason`` and ``overflow_clipped``.
    """
    meta = _obj(value, where)
    _text(meta.get("key"), f"{where}.key")
    _text(meta.get("dtype"), f"{where}.dtype")
    shape(meta.get("shape"), f"{where}.shape")
    for name in ("offset", "slope", "intercept"):  # float32: decoding adds offset, readers scale by the rest
        if name in meta:
            float32_number(meta[name], f"{where}.{name}")
    if not full:
        return meta
    source = meta.get("source_dtype")
    try:
        kind = np.dtype(source).kind if isinstance(source, str) else ""
    except (TypeError, ValueError):
        kind = ""
    if not kind or kind not in _SOURCE_KINDS:
        raise ValueError(f"{where}.source_dtype is {source!r}, not a numeric dtype name")
    error = _obj(meta.get("error"), f"{where}.error")
    for name in ("max_abs", "max_rel"):
        if number(error.get(name), f"{where}.error.{name}") < 0:
            raise ValueError(f"{where}.error.{name} is {error[name]!r}, not an error (>= 0)")
    _text(_obj(meta.get("choice"), f"{where}.choice").get("reason"), f"{where}.choice.reason")
    count(meta.get("overflow_clipped", 0), f"{where}.overflow_clipped")
    count(meta.get("nonfinite", 0), f"{where}.nonfinite")
    _value_range(meta.get("range"), f"{where}.range")
    return meta


def _value_range(value: Any, where: str) -> None:
    """``[min, max]`` of the finite source values (finite numbers, min <= max) or ``[null, null]``."""
    if value == [None, None]:
        return
    if not isinstance(value, list) or len(value) != 2:
        raise ValueError(f"{where} is {value!r}, not [min, max]")
    lo, hi = number(value[0], f"{where}[0]"), number(value[1], f"{where}[1]")
    if lo > hi:
        raise ValueError(f"{where} is {value!r}: min above max")


def checked_sample(json_bytes: bytes, entry: dict[str, Any], where: str) -> dict[str, Any]:
    """One sample's JSON checked against its index ``entry``: the per-sample metadata check that
    ``inspect`` (:func:`ampkit.data.format.sample_metas`) and ``verify-shards`` share, so they agree.

    Every field a summary or a reader uses (:func:`sample_meta` with ``full``), the key the index
    files it under, a known stored dtype and a shape whose size is the ``.bin`` span's. Raises
    ``ValueError`` naming ``where`` and the field.
    """
    meta = sample_meta(parse_json(json_bytes, where), where, full=True)
    if meta["key"] != entry["key"]:
        raise ValueError(f"{where}: its JSON names key {meta['key']!r}")
    itemsize = STORED_ITEMSIZE.get(meta["dtype"])
    if itemsize is None:
        raise ValueError(
            f"{where}: unknown stored dtype {meta['dtype']!r}; valid: {', '.join(STORED_ITEMSIZE)}"
        )
    need = nbytes(meta["shape"], itemsize)
    if need != int(entry["bin"][1]):
        raise ValueError(
            f"{where}: shape {meta['shape']} of {meta['dtype']} needs {need} bytes, the shard holds {entry['bin'][1]}"
        )
    return meta
