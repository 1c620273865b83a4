"""Input discovery and loading for ``convert``: ``.npz``/``.npy`` files or folders, with metadata.

Per-sample metadata comes from 0-d arrays inside an ``.npz`` (``slope``, ``intercept``, anything
else) and from a JSON sidecar next to the file (``vol.npz`` -> ``vol.json``); the sidecar wins.
``slope``/``intercept`` (also DICOM's ``RescaleSlope``/``RescaleIntercept``) become top-level
fields of the sample JSON, the rest goes to its ``meta``.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UsageError

SUFFIXES = (".npz", ".npy")
"""Input file types."""
_SCALE_KEYS = {
    "slope": "slope",
    "rescaleslope": "slope",
    "intercept": "intercept",
    "rescaleintercept": "intercept",
}


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

    @property
    def numel(self) -> int:
        """Number of values."""
        return int(np.prod(self.shape, dtype=np.int64))


def _header(fp: Any) -> tuple[tuple[int, ...], np.dtype]:
    version = np.lib.format.read_magic(fp)
    if version == (1, 0):
        shape, _, dtype = np.lib.format.read_array_header_1_0(fp)
    else:
        shape, _, dtype = np.lib.format.read_array_header_2_0(fp)
    return tuple(shape), dtype


def _npz_source(path: Path, label: str, array_key: str | None) -> Source:
    with zipfile.ZipFile(path) as zf:
        headers: dict[str, tuple[tuple[int, ...], np.dtype]] = {}
        for name in zf.namelist():  # zip order = the order np.savez wrote the arrays
            if name.endswith(".npy"):
                with zf.open(name) as fp:
                    headers[name[: -len(".npy")]] = _header(fp)
    arrays = [k for k, (shape, _) in headers.items() if len(shape) >= 1]
    if array_key is None:
        if not arrays:
            raise UsageError(f"{label}: no array with at least one dimension; members: {', '.join(headers)}")
        array_key = arrays[0]
    elif array_key not in headers:
        raise UsageError(f"{label} has no array {array_key!r}; arrays: {', '.join(arrays) or 'none'}")
    shape, dtype = headers[array_key]
    return Source(label, array_key, shape, dtype.name)


def _source(path: Path, array_key: str | None) -> Source:
    label = path.as_posix()
    try:
        if path.suffix == ".npz":
            return _npz_source(path, label, array_key)
        with open(path, "rb") as fp:
            shape, dtype = _header(fp)
        return Source(label, None, shape, dtype.name)
    except UsageError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile) as err:
        raise UsageError(f"{label}: not a readable {path.suffix} file ({err})") from err


def discover(paths: list[str], array_key: str | None = None) -> list[Source]:
    """Sources for ``paths`` (files, or folders searched recursively in sorted order), in the given order."""
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
                raise UsageError(f"{raw}: folder holds no .npz or .npy files")
            sources.extend(_source(p, array_key) for p in found)
        elif path.is_file() and path.suffix in SUFFIXES:
            sources.append(_source(path, array_key))
        elif path.exists():
            raise UsageError(f"{raw}: not a .npz or .npy file or a folder")
        else:
            raise UsageError(f"{raw}: no such file or folder")
    return sources


def _plain(value: Any) -> Any:
    """A JSON-serialisable form of an npz scalar or sidecar value."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def load(source: Source) -> tuple[np.ndarray, float, float, dict[str, Any]]:
    """``(array, slope, intercept, meta)`` of one source."""
    path = Path(source.path)
    found: dict[str, Any] = {}
    if source.array_key is None:
        array = np.load(path, allow_pickle=False)
    else:
        with np.load(path, allow_pickle=False) as npz:
            array = npz[source.array_key]
            for name in npz.files:
                if name != source.array_key and npz[name].ndim == 0:
                    found[name] = _plain(npz[name][()])
    sidecar = path.with_suffix(".json")
    if sidecar.is_file():
        try:
            found.update(json.loads(sidecar.read_text(encoding="utf-8")))
        except (ValueError, UnicodeDecodeError) as err:
            raise UsageError(f"{sidecar}: not valid JSON ({err})") from err
    scale = {"slope": 1.0, "intercept": 0.0}
    meta: dict[str, Any] = {}
    for name, value in found.items():
        if name.lower() in _SCALE_KEYS:
            scale[_SCALE_KEYS[name.lower()]] = float(value)
        else:
            meta[name] = _plain(value)
    return array, scale["slope"], scale["intercept"], meta
