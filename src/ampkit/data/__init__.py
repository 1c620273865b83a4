"""Reduced-precision dataset storage: convert arrays to 2-byte tar shards, inspect, verify, read back.

The on-disk format is described (and decoded) by :mod:`ampkit.data.format`.
"""

from .codec import CodecOptions, Encoded, SampleError, encode
from .format import decode_array, decode_tensor, load_manifest, rebuild_manifest

__all__ = [
    "CodecOptions",
    "Encoded",
    "SampleError",
    "decode_array",
    "decode_tensor",
    "encode",
    "load_manifest",
    "rebuild_manifest",
]
