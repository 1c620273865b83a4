"""Input discovery for ``convert``: ``.npz``/``.npy`` files or folders, with metadata, checked up front.

Per-sample metadata comes from 0-d arrays inside an ``.npz`` (``slope``, ``intercept``, anything
else) and from a JSON sidecar next to the file (``vol.npz`` -> ``vol.json``, :mod:`.sidecar`); the sidecar wins.
``slope``/``intercept`` (also DICOM's ``RescaleSlope``/``RescaleIntercept``) become top-level
fields of the sample JSON, the rest goes to its ``meta``.

:func:`discover` checks every input before anything is converted, from headers alone (no array
data is read): a numeric dtype, at least one dimension and one value, a file as long as its
header promises, metadata members JSON can hold, and a sidecar that is a JSON object with
numeric scale fields (within float32's range), and no file given twice. Files are opened without
ever blocking (a FIFO is refused). A file that fails is a :class:`UsageError` naming it and what
is valid. Reading a source's data when its sample is encoded is :mod:`ampkit.data.sourceread`.
"""

from __future__ import annotations

import dataclasses
import math
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UsageError
from ..fsutil import open_binary
from . import schema
from .sidecar import SCALE_KEYS, read_sidecar, sidecar_stamp

SUFFIXES = (".npz", ".npy")
"""Input file types."""
_ARRAY_KINDS = "iuf"
"""dtype kinds that can be stored: signed and unsigned integers, real floats."""
_META_KINDS = "biufU"
"""dtype kinds a 0-d metadata member may have (JSON holds booleans, numbers and strings)."""
VALID_ARRAY = "valid: a real integer or float array with at least one dimension and one value"


@dataclass(frozen=True)
class Source:
    """One input sample: a file and, for ``.npz``, the array in it."""

    path: str
    """The file, as given or found under a given folder (recorded in the sample JSON)."""
    array_key: str | None
    """The ``.npz`` member holding the array; None for ``.npy``."""
    shape: tuple[int, ...]
    """Shape of the array (read from its header, without loading the data)."""
    dtype: str
    """Source dtype name (``float32``, ``int16``, ...)."""
    meta_keys: tuple[str, ...] = ()
    """The ``.npz``'s 0-d members, read as metadata (the other arrays are never read)."""
    identity: tuple[int, int] = (0, 0)
    """``(st_dev, st_ino)`` of the file when found: the same file named twice is refused."""
    stamp: tuple[int, ...] = ()
    """Size and mtime (ns) of the file and of its sidecar (-1, -1: none) when found: a resumed
    ``convert`` rewrites a kept shard whose sources' stamps changed (:mod:`ampkit.data.stamps`)."""

    @property
    def numel(self) -> int:
        """Number of values."""
        return math.prod(self.shape)


def npy_header(fp: Any, with_order: bool = False) -> Any:
    """``(shape, dtype, data bytes the header promises)`` of a ``.npy`` stream, which is left at the data
    (``with_order``: and whether the data is in Fortran order, as a fourth item)."""
    version = np.lib.format.read_magic(fp)
    if version == (1, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(fp)
    else:
        shape, fortran, dtype = np.lib.format.read_array_header_2_0(fp)
    if any(n < 0 for n in shape):
        raise ValueError(f"negative dimension in shape {shape}")
    found = (tuple(shape), dtype, math.prod(shape) * dtype.itemsize)
    return (*found, bool(fortran)) if with_order else found


def _check_array(label: str, shape: tuple[int, ...], dtype: np.dtype, hint: str = "") -> None:
    if dtype.hasobject or dtype.kind not in _ARRAY_KINDS:
        what = "object (pickled)" if dtype.hasobject else str(dtype)
        raise UsageError(f"{label}: dtype {what} cannot be stored; {VALID_ARRAY}{hint}")
    if not shape:
        raise UsageError(f"{label}: a 0-d array (a single value); {VALID_ARRAY}{hint}")
    if math.prod(shape) == 0:
        raise UsageError(f"{label}: an empty array of shape {list(shape)}; {VALID_ARRAY}{hint}")


def _check_length(label: str, have: int, need: int) -> None:
    if have < need:
        raise UsageError(
            f"{label}: truncated: the header promises {need} data bytes, the file holds {have}; "
            "valid: a complete file written by numpy.save/savez"
        )


def _check_meta(label: str, name: str, dtype: np.dtype) -> None:
    if dtype.hasobject or dtype.kind not in _META_KINDS:
        what = "object (pickled)" if dtype.hasobject else str(dtype)
        raise UsageError(
            f"{label}: metadata member {name!r} has dtype {what}; valid: 0-d numbers, booleans or strings"
        )
    if name.lower() in SCALE_KEYS and dtype.kind not in "iuf":
        raise UsageError(f"{label}: {name} has dtype {dtype}; valid: a number")


def _npz_source(fh: Any, label: str, array_key: str | None) -> Source:
    with zipfile.ZipFile(fh) as zf:
        headers: dict[str, tuple[tuple[int, ...], np.dtype]] = {}
        for info in zf.infolist():  # zip order = the order np.savez wrote the arrays
            if info.filename.endswith(".npy"):
                name = info.filename[: -len(".npy")]
                with zf.open(info) as fp:
                    shape, dtype, need = npy_header(fp)
                    _check_length(f"{label} member {name!r}", info.file_size - fp.tell(), need)
                    if not shape and name.lower() in SCALE_KEYS and dtype.kind in "iuf":
                        value = np.frombuffer(fp.read(dtype.itemsize), dtype)[0]
                        try:
                            schema.float32_number(float(value), name)
                        except ValueError as err:
                            raise UsageError(f"{label}: {err}; valid: a finite number") from None
                headers[name] = (shape, dtype)
    arrays = [k for k, (shape, _) in headers.items() if len(shape) >= 1]
    if array_key is None:
        if not arrays:
            members = ", ".join(headers) or "none"
            raise UsageError(
                f"{label}: no array with at least one dimension (members: {members}); {VALID_ARRAY}"
            )
        array_key = arrays[0]
    elif array_key not in headers:
        raise UsageError(f"{label} has no array {array_key!r}; arrays: {', '.join(arrays) or 'none'}")
    meta_keys = tuple(k for k, (shape, _) in headers.items() if k != array_key and not shape)
    for name in meta_keys:
        _check_meta(label, name, headers[name][1])
    shape, dtype = headers[array_key]
    numeric = [k for k, (s, d) in headers.items() if s and not d.hasobject and d.kind in _ARRAY_KINDS]
    hint = f" (--array-key; numeric arrays here: {', '.join(numeric) or 'none'})"
    _check_array(f"{label} array {array_key!r}", shape, dtype, hint)
    return Source(label, array_key, shape, dtype.name, meta_keys)


def _source(path: Path, array_key: str | None) -> Source:
    label = path.as_posix()
    try:
        with open_binary(path) as fp:  # a FIFO in its place is refused, never waited on
            info = os.fstat(fp.fileno())
            if path.suffix == ".npz":
                source = _npz_source(fp, label, array_key)
            else:
                shape, dtype, need = npy_header(fp)
                _check_length(label, info.st_size - fp.tell(), need)
                _check_array(label, shape, dtype)
                source = Source(label, None, shape, dtype.name)
    except UsageError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zipfile.LargeZipFile) as err:
        kind = "numpy.savez (a zip of .npy)" if path.suffix == ".npz" else "numpy.save"
        raise UsageError(
            f"{label}: not a readable {path.suffix} file ({err}); valid: files written by {kind}"
        ) from None
    read_sidecar(path)  # checked now, read again when the sample is converted
    stamp = (info.st_size, info.st_mtime_ns, *sidecar_stamp(path))
    return dataclasses.replace(source, identity=(info.st_dev, info.st_ino), stamp=stamp)


def discover(paths: list[str], array_key: str | None = None) -> list[Source]:
    """Sources for ``paths`` (files, or folders searched recursively in sorted order), in the given order.

    Every source is checked from its header (and its sidecar read) here, before any conversion; a
    file given twice (also as a link, or through a folder and by name) is refused.
    """
    if not paths:
        raise UsageError("no input given; pass .npz/.npy files or folders of them")
    sources: list[Source] = []
    for raw in paths:
        sources.extend(_collect(raw, array_key))
    seen: dict[tuple[int, int], int] = {}
    for i, source in enumerate(sources):
        first = sources[seen.setdefault(source.identity, i)].path
        if seen[source.identity] != i:
            same = "given twice" if first == source.path else f"the same file as {first}"
            raise UsageError(f"{source.path}: {same}; valid: each source once (it would be converted twice)")
    return sources


def _collect(raw: str, array_key: str | None) -> list[Source]:
    """The sources of one SRC argument: a file, or a folder searched recursively in sorted order."""
    path = Path(raw)
    if path.is_dir():
        found = sorted(
            (p for p in path.rglob("*") if p.suffix in SUFFIXES and p.is_file()), key=Path.as_posix
        )
        if not found:
            raise UsageError(f"{raw}: folder holds no .npz or .npy files; valid: a folder of them")
        return [_source(p, array_key) for p in found]
    if path.is_file() and path.suffix in SUFFIXES:
        return [_source(path, array_key)]
    if path.exists():
        raise UsageError(
            f"{raw}: not a .npz or .npy file or a folder; valid: {', '.join(SUFFIXES)} files or folders"
        )
    raise UsageError(f"{raw}: no such file or folder")
