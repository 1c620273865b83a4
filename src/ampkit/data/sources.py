"""Input discovery and loading for ``convert``: ``.npz``/``.npy`` files or folders, with metadata.

Per-sample metadata comes from 0-d arrays inside an ``.npz`` (``slope``, ``intercept``, anything
else) and from a JSON sidecar next to the file (``vol.npz`` -> ``vol.json``, :mod:`.sidecar`); the sidecar wins.
``slope``/``intercept`` (also DICOM's ``RescaleSlope``/``RescaleIntercept``) become top-level
fields of the sample JSON, the rest goes to its ``meta``.

:func:`discover` checks every input before anything is converted, from headers alone (no array
data is read): a numeric dtype, at least one dimension and one value, a file as long as its
header promises, metadata members JSON can hold, and a sidecar that is a JSON object with
numeric scale fields. A file that fails is a :class:`UsageError` naming it and what is valid.
"""

from __future__ import annotations

import math
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UsageError
from . import schema
from .scratch import Scratch, empty
from .sidecar import SCALE_KEYS, plain, read_sidecar

SUFFIXES = (".npz", ".npy")
"""Input file types."""
_ARRAY_KINDS = "iuf"
"""dtype kinds that can be stored: signed and unsigned integers, real floats."""
_META_KINDS = "biufU"
"""dtype kinds a 0-d metadata member may have (JSON holds booleans, numbers and strings)."""
_VALID_ARRAY = "valid: a real integer or float array with at least one dimension and one value"


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

    @property
    def numel(self) -> int:
        """Number of values."""
        return math.prod(self.shape)


def _header(fp: Any, with_order: bool = False) -> Any:
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
        raise UsageError(f"{label}: dtype {what} cannot be stored; {_VALID_ARRAY}{hint}")
    if not shape:
        raise UsageError(f"{label}: a 0-d array (a single value); {_VALID_ARRAY}{hint}")
    if math.prod(shape) == 0:
        raise UsageError(f"{label}: an empty array of shape {list(shape)}; {_VALID_ARRAY}{hint}")


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


def _npz_source(path: Path, label: str, array_key: str | None) -> Source:
    with zipfile.ZipFile(path) as zf:
        headers: dict[str, tuple[tuple[int, ...], np.dtype]] = {}
        for info in zf.infolist():  # zip order = the order np.savez wrote the arrays
            if info.filename.endswith(".npy"):
                name = info.filename[: -len(".npy")]
                with zf.open(info) as fp:
                    shape, dtype, need = _header(fp)
                    _check_length(f"{label} member {name!r}", info.file_size - fp.tell(), need)
                    if not shape and name.lower() in SCALE_KEYS and dtype.kind in "iuf":
                        value = np.frombuffer(fp.read(dtype.itemsize), dtype)[0]
                        if not math.isfinite(float(value)):
                            raise UsageError(f"{label}: {name} is {value}; valid: a finite number")
                headers[name] = (shape, dtype)
    arrays = [k for k, (shape, _) in headers.items() if len(shape) >= 1]
    if array_key is None:
        if not arrays:
            members = ", ".join(headers) or "none"
            raise UsageError(
                f"{label}: no array with at least one dimension (members: {members}); {_VALID_ARRAY}"
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
        if path.suffix == ".npz":
            source = _npz_source(path, label, array_key)
        else:
            with open(path, "rb") as fp:
                shape, dtype, need = _header(fp)
                _check_length(label, path.stat().st_size - fp.tell(), need)
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
    return source


def discover(paths: list[str], array_key: str | None = None) -> list[Source]:
    """Sources for ``paths`` (files, or folders searched recursively in sorted order), in the given order.

    Every source is checked from its header (and its sidecar read) here, before any conversion.
    """
    if not paths:
        raise UsageError("no input given; pass .npz/.npy files or folders of them")
    sources: list[Source] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = sorted(
                (p for p in path.rglob("*") if p.suffix in SUFFIXES and p.is_file()), key=Path.as_posix
            )
            if not found:
                raise UsageError(f"{raw}: folder holds no .npz or .npy files; valid: a folder of them")
            sources.extend(_source(p, array_key) for p in found)
        elif path.is_file() and path.suffix in SUFFIXES:
            sources.append(_source(path, array_key))
        elif path.exists():
            raise UsageError(
                f"{raw}: not a .npz or .npy file or a folder; valid: {', '.join(SUFFIXES)} files or folders"
            )
        else:
            raise UsageError(f"{raw}: no such file or folder")
    return sources


def read_array(fp: Any, scratch: Scratch | None = None) -> np.ndarray:
    """The array of a ``.npy`` stream (a file or an ``.npz`` member), read straight into its memory.

    One ``readinto`` of the data (``np.load`` reads a large ``.npy`` several times slower); the
    header is checked as :func:`discover` checks it, and a short file is a ``ValueError``. With a
    ``scratch`` the array is a view of its ``source`` buffer (valid until the next read into it).
    """
    shape, dtype, need, fortran = _header(fp, with_order=True)
    if dtype.hasobject:
        raise ValueError(f"dtype {dtype} holds Python objects; {_VALID_ARRAY}")
    array = empty(scratch, "source", shape, dtype, order="F" if fortran else "C")
    raw = (array.T if fortran else array).reshape(-1).view(np.uint8)
    got = 0
    while got < need:
        n = fp.readinto(raw[got:])
        if not n:
            raise ValueError(f"truncated: {got} of {need} data bytes")
        got += n
    return array


def load(source: Source, scratch: Scratch | None = None) -> tuple[np.ndarray, float, float, dict[str, Any]]:
    """``(array, slope, intercept, meta)`` of one source (the array in ``scratch`` when given)."""
    path = Path(source.path)
    found: dict[str, Any] = {}
    if source.array_key is None:
        with open(path, "rb", buffering=0) as fp:
            array = read_array(fp, scratch)
    else:
        with zipfile.ZipFile(path) as zf:
            with zf.open(f"{source.array_key}.npy") as fp:
                array = read_array(fp, scratch)
            for name in source.meta_keys:
                with zf.open(f"{name}.npy") as fp:
                    found[name] = plain(read_array(fp)[()])
    found.update(read_sidecar(path))
    scale = {"slope": 1.0, "intercept": 0.0}
    meta: dict[str, Any] = {}
    for name, value in found.items():
        if name.lower() in SCALE_KEYS:
            scale[SCALE_KEYS[name.lower()]] = schema.number(value, name)
        else:
            meta[name] = plain(value)
    return array, scale["slope"], scale["intercept"], meta
