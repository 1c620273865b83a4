"""Decoding a stored sample: the 2-byte stored dtypes and how a reader widens them to float32.

``value = stored.astype(float32) + offset``; slope/intercept are metadata that the reader applies
afterwards (``hu = slope * value + intercept``), never folded into the bytes. Plain ``numpy``
(torch only inside :func:`decode_tensor`), part of the ``ampkit-shards/1`` format:
:mod:`ampkit.data.format` re-exports every name here.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from . import schema

STORED_DTYPES: dict[str, np.dtype] = {
    "float16": np.dtype("<f2"),
    "bfloat16": np.dtype("<u2"),  # upper 16 bits of a float32, round-to-nearest-even
    "int16": np.dtype("<i2"),
}
"""Stored dtype name (``meta["dtype"]``) -> numpy dtype of the raw little-endian ``.bin`` bytes."""


def bf16_bits_to_float32(bits: np.ndarray) -> np.ndarray:
    """Widen bfloat16 bit patterns (uint16) to float32 exactly (bits become the upper half)."""
    return (bits.astype(np.uint32) << 16).view(np.float32)


def stored_array(bin_bytes: bytes | memoryview, meta: dict[str, Any]) -> np.ndarray:
    """The stored array as numpy, in its stored dtype (bfloat16 as uint16 bit patterns), shaped."""
    dtype = STORED_DTYPES.get(meta["dtype"])
    if dtype is None:
        raise ValueError(f"unknown stored dtype {meta['dtype']!r}; valid: {', '.join(STORED_DTYPES)}")
    shape = tuple(int(n) for n in meta["shape"])
    if len(bin_bytes) != schema.nbytes(list(shape), dtype.itemsize):
        raise ValueError(
            f"sample {meta.get('key')}: {len(bin_bytes) // dtype.itemsize} values stored, shape "
            f"{list(shape)} needs {math.prod(shape)}"
        )
    return np.frombuffer(bin_bytes, dtype=dtype).reshape(shape)


def widen(stored: np.ndarray, dtype: str, offset: float) -> np.ndarray:
    """Stored array (bfloat16 as uint16 bits) -> float32 values: ``stored.astype(float32) + offset``."""
    out = bf16_bits_to_float32(stored) if dtype == "bfloat16" else stored.astype(np.float32)
    if offset != 0:
        out += np.float32(offset)
    return out


def decode_array(bin_bytes: bytes | memoryview, meta: dict[str, Any]) -> np.ndarray:
    """Decode one sample to float32: ``stored.astype(float32) + offset`` (slope/intercept not applied)."""
    return widen(stored_array(bin_bytes, meta), meta["dtype"], float(meta.get("offset", 0.0)))


def decode_tensor(bin_bytes: bytes | bytearray | memoryview, meta: dict[str, Any]) -> tuple[Any, float]:
    """The raw 2-byte tensor (torch.float16/bfloat16/int16, shaped, sharing ``bin_bytes``) and the offset.

    Lets a loader batch and copy 2-byte data to the GPU and widen there:
    ``t.to(device).float() + offset``. Pass a writable buffer (``bytearray``) to avoid torch's
    read-only-buffer warning; ``bytes`` are copied once into a bytearray for that reason.
    """
    import torch  # imported here so that this module (and format.py) stays importable without torch

    torch_dtypes = {"float16": torch.float16, "bfloat16": torch.bfloat16, "int16": torch.int16}
    if meta["dtype"] not in torch_dtypes:
        raise ValueError(f"unknown stored dtype {meta['dtype']!r}; valid: {', '.join(torch_dtypes)}")
    buf = bin_bytes if isinstance(bin_bytes, bytearray) else bytearray(bin_bytes)
    shape = [int(n) for n in meta["shape"]]
    if len(buf) == 0:
        return torch.empty(shape, dtype=torch_dtypes[meta["dtype"]]), float(meta.get("offset", 0.0))
    t = torch.frombuffer(buf, dtype=torch_dtypes[meta["dtype"]])
    if t.numel() != math.prod(shape):
        raise ValueError(f"sample {meta.get('key')}: {t.numel()} values stored, shape {shape}")
    # torch.frombuffer reads native byte order; every supported machine is little endian
    return t.reshape(shape), float(meta.get("offset", 0.0))
