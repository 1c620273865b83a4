"""The JSON sidecar of a ``convert`` input (``vol.npz`` -> ``vol.json``): per-sample metadata, checked.

A sidecar is a JSON object of at most :data:`SIDECAR_MAX_BYTES`; its ``slope``/``intercept``
(any spelling in :data:`SCALE_KEYS`, DICOM's ``RescaleSlope``/``RescaleIntercept`` included)
must be finite numbers within float32's range and become top-level fields of the sample JSON, the rest goes to its
``meta``. Anything else is a :class:`~ampkit.errors.UsageError` naming the file.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UsageError
from ..fsutil import FileTooLarge, read_limited
from . import schema

SCALE_KEYS = {
    "slope": "slope",
    "rescaleslope": "slope",
    "intercept": "intercept",
    "rescaleintercept": "intercept",
}
"""Metadata names (lower-cased) that scale the stored values, and the field each becomes."""

SIDECAR_MAX_BYTES = 1 << 20
"""Largest JSON sidecar read (it goes into the sample's JSON, parsed on every read of the sample)."""


def read_sidecar(path: Path) -> dict[str, Any]:
    """The JSON sidecar of ``path`` (``vol.npz`` -> ``vol.json``) as a dict, ``{}`` when there is none.

    It must be a JSON object whose ``slope``/``intercept`` (any spelling in ``SCALE_KEYS``)
    are finite numbers; anything else is a :class:`UsageError` naming the file.
    """
    sidecar = path.with_suffix(".json")
    if not sidecar.is_file():  # a regular file (a FIFO or device beside the volume is not read)
        return {}
    valid = 'valid: a JSON object such as {"slope": 1.0, "intercept": -1024, "label": 2}'
    try:  # every sample's JSON carries it: a few KiB, not a log file; opened without ever blocking
        found = schema.parse_json(read_limited(sidecar, SIDECAR_MAX_BYTES), str(sidecar))
    except FileTooLarge:
        raise UsageError(
            f"{sidecar}: more than {SIDECAR_MAX_BYTES >> 20} MiB of metadata, which every sample's "
            f"JSON would carry; {valid} (at most {SIDECAR_MAX_BYTES >> 20} MiB)"
        ) from None
    except OSError as err:
        raise UsageError(f"{sidecar}: cannot read the sidecar ({err.strerror or err})") from None
    except ValueError as err:
        raise UsageError(f"{err}; {valid}") from None
    if not isinstance(found, dict):
        raise UsageError(f"{sidecar}: a JSON {type(found).__name__}, not an object; {valid}")
    for name, value in found.items():
        if name.lower() in SCALE_KEYS:
            try:
                schema.float32_number(value, name)
            except ValueError as err:
                raise UsageError(f"{sidecar}: {err}; valid: a JSON number such as 1.0") from None
    return found


def sidecar_stamp(path: Path) -> tuple[int, int]:
    """``(size, mtime in ns)`` of the sidecar of ``path``; ``(-1, -1)`` when there is none."""
    try:
        info = os.stat(path.with_suffix(".json"))
    except OSError:
        return (-1, -1)
    return (info.st_size, info.st_mtime_ns) if stat.S_ISREG(info.st_mode) else (-1, -1)


def plain(value: Any) -> Any:
    """A JSON-serialisable form of an npz scalar or sidecar value."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value
