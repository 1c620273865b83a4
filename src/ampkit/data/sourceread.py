"""Reading one ``convert`` input's data when its sample is encoded: the array, scale and metadata.

:func:`ampkit.data.sources.discover` checked every input from its header before the run began;
by the time a sample is encoded its file may have changed. The file is opened again without ever
blocking (a FIFO swapped in meanwhile is refused, never waited on), a header promising more data
than the file holds is refused before anything is allocated, and the sidecar is read again.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from ..fsutil import open_regular
from . import schema
from .scratch import Scratch, empty
from .sidecar import SCALE_KEYS, plain, read_sidecar
from .sources import VALID_ARRAY, Source, npy_header


def read_array(fp: Any, scratch: Scratch | None = None, size: int | None = None) -> np.ndarray:
    """The array of a ``.npy`` stream (a file or an ``.npz`` member), read straight into its memory.

    One ``readinto`` of the data (``np.load`` reads a large ``.npy`` several times slower); the
    header is checked as :func:`discover` checks it, and a short file is a ``ValueError`` (with the
    stream's ``size`` known, before anything is allocated: a header may promise terabytes). With a
    ``scratch`` the array is a view of its ``source`` buffer (valid until the next read into it).
    """
    shape, dtype, need, fortran = npy_header(fp, with_order=True)
    if dtype.hasobject:
        raise ValueError(f"dtype {dtype} holds Python objects; {VALID_ARRAY}")
    if size is not None and need > size - fp.tell():
        raise ValueError(
            f"truncated: the header promises {need} data bytes, the file holds {size - fp.tell()}"
        )
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
    fd, info = open_regular(path)  # a FIFO swapped in since discover() is refused, never waited on
    os.set_blocking(fd, True)
    if source.array_key is None:
        with os.fdopen(fd, "rb", buffering=0) as fp:
            array = read_array(fp, scratch, info.st_size)
    else:
        with os.fdopen(fd, "rb") as fh, zipfile.ZipFile(fh) as zf:
            member = f"{source.array_key}.npy"
            with zf.open(member) as fp:
                array = read_array(fp, scratch, zf.getinfo(member).file_size)
            for name in source.meta_keys:
                with zf.open(f"{name}.npy") as fp:
                    found[name] = plain(read_array(fp, None, zf.getinfo(f"{name}.npy").file_size)[()])
    found.update(read_sidecar(path))
    scale = {"slope": 1.0, "intercept": 0.0}
    meta: dict[str, Any] = {}
    for name, value in found.items():
        if name.lower() in SCALE_KEYS:
            scale[SCALE_KEYS[name.lower()]] = schema.float32_number(value, name)
        else:
            meta[name] = plain(value)
    return array, scale["slope"], scale["intercept"], meta
