"""Reduced-precision dataset storage: convert arrays to 2-byte tar shards, inspect, verify, read back.

The on-disk format is described (and decoded) by :mod:`ampkit.data.format`.
"""

from .codec import CodecOptions, Encoded, SampleError, encode
from .format import decode_array, decode_tensor, load_manifest, rebuild_manifest

#: Loader names (torch + webdataset) -> their module, imported on first use.
_LAZY = {
    "IndexedShards": "loader_indexed",
    "StreamingShards": "loader_stream",
    "PreprocessConfig": "preprocess",
    "finish_batch": "preprocess",
    "EpochPlan": "order",
    "epoch_order": "order",
    "ShardError": "samples",
}

__all__ = [
    "CodecOptions",
    "Encoded",
    "SampleError",
    "decode_array",
    "decode_tensor",
    "encode",
    "load_manifest",
    "rebuild_manifest",
    *_LAZY,
]


def __getattr__(name: str) -> object:
    # the loaders pull in torch and webdataset: imported on first use, so the format stays light
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
