"""Reused conversion buffers: same bytes as fresh arrays, no fresh pages per sample."""

from __future__ import annotations

import hashlib
import resource
from pathlib import Path

import numpy as np
import pytest

from ampkit.data.codec import CodecOptions, encode
from ampkit.data.scratch import Scratch
from ampkit.data.shardjob import encode_sample
from ampkit.data.sourceread import load
from ampkit.data.sources import discover


def test_views_reuse_one_buffer_per_slot_and_grow_when_needed() -> None:
    s = Scratch()
    a = s.array("x", (4, 5), np.float32)
    a[...] = 1.0
    b = s.array("x", (2, 3), np.float32)  # smaller: the same memory
    assert np.shares_memory(a, b) and b.shape == (2, 3)
    assert not np.shares_memory(a, s.array("y", 20, np.float32))  # another slot, another buffer
    held = s.nbytes
    big = s.array("x", 10_000, np.float64)  # larger: a new buffer for the slot
    assert big.shape == (10_000,) and s.nbytes > held and not np.shares_memory(a, big)


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64", "int16", "uint8"])
@pytest.mark.parametrize("order", ["C", "F"])
def test_views_are_aligned_and_shaped_like_np_empty(dtype: str, order: str) -> None:
    s = Scratch()
    s.array("pad", 3, np.uint8)
    v = s.array("x", (3, 4, 5), dtype, order=order)
    ref = np.empty((3, 4, 5), dtype, order=order)  # type: ignore[call-overload]
    assert v.shape == ref.shape and v.dtype == ref.dtype and v.strides == ref.strides
    assert v.ctypes.data % 64 == 0 and v.flags.writeable


@pytest.mark.parametrize("dtype", ["fp16", "bf16", "int16", "auto"])
def test_encoding_with_scratch_equals_encoding_without(dtype: str) -> None:
    rng = np.random.default_rng(1)
    s = Scratch()
    for i in range(3):  # later samples reuse (and overwrite) the first one's buffers
        x = (
            rng.normal(0, 300, (40, 33)) if dtype != "int16" else rng.integers(-1000, 3000, (40, 33))
        ).astype(np.float32)
        plain = encode(x, CodecOptions(dtype=dtype), f"s{i}")
        reused = encode(x, CodecOptions(dtype=dtype), f"s{i}", s)
        assert reused.data.tobytes() == plain.data.tobytes() and reused.dtype == plain.dtype
        assert (reused.max_abs, reused.max_rel, reused.range) == (plain.max_abs, plain.max_rel, plain.range)


def test_a_conversion_worker_faults_no_fresh_pages_after_the_first_sample(tmp_path: Path) -> None:
    """The reason for the scratch: a fresh multi-MB array per sample faulted in every page (~40% of
    a conversion's CPU time on a VM). After the first sample, encoding faults in almost nothing."""
    paths = []
    for i in range(6):
        paths.append(tmp_path / f"v{i}.npy")
        np.save(paths[-1], np.random.default_rng(i).normal(0, 300, (96, 96, 96)).astype(np.float32))
    sources = discover([str(p) for p in paths])
    want = [hashlib.sha256(np.load(p).astype(np.float16)).digest() for p in paths]
    s = Scratch()
    encode_sample(0, sources[0], CodecOptions(dtype="fp16"), s)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    got = []
    for i, src in enumerate(sources[1:], 1):
        got.append(hashlib.sha256(encode_sample(i, src, CodecOptions(dtype="fp16"), s)[1]).digest())
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
    assert got == want[1:]
    pages_per_sample = 96**3 * 4 // 4096  # the float32 source alone, had it been a fresh array
    assert faults < pages_per_sample, f"{faults} page faults for 5 samples"


def test_load_into_scratch_equals_numpy(tmp_path: Path) -> None:
    x = np.asfortranarray(np.arange(60, dtype=np.float32).reshape(3, 4, 5))
    np.save(tmp_path / "f.npy", x)
    (src,) = discover([str(tmp_path / "f.npy")])
    got, *_ = load(src, Scratch())
    assert np.array_equal(got, x) and got.flags.f_contiguous
