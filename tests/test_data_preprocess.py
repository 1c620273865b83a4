"""The float32 chain: rescale, clip, normalise, resize; the 2-byte device stage; config errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ampkit.data.preprocess import PreprocessConfig, apply_chain, finish_batch
from ampkit.errors import UsageError


def _batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    stored = (torch.rand(3, 4, 6, 8, generator=gen) * 4000 - 2000).to(torch.float16)
    offset = torch.tensor([0.0, 100.0, -50.0])
    slope = torch.tensor([1.0, 2.0, 0.5])
    intercept = torch.tensor([0.0, -1024.0, 10.0])
    return stored, offset, slope, intercept


def test_rescale_clip_range_matches_numpy() -> None:
    stored, offset, slope, intercept = _batch()
    cfg = PreprocessConfig(clip=(-1000.0, 1000.0), normalize="range")
    got = apply_chain(stored, offset, slope, intercept, cfg)
    s = stored.numpy().astype(np.float32)
    hu = (s + offset.numpy()[:, None, None, None]) * slope.numpy()[:, None, None, None]
    hu = hu + intercept.numpy()[:, None, None, None]
    want = (np.clip(hu, -1000, 1000) + 1000) / 1000 - 1
    assert got.dtype == torch.float32
    np.testing.assert_allclose(got.numpy(), want, atol=1e-6)
    assert got.min() >= -1 and got.max() <= 1


def test_meanstd_and_no_rescale() -> None:
    stored, offset, slope, intercept = _batch()
    cfg = PreprocessConfig(rescale=False, normalize="meanstd", mean=10.0, std=4.0)
    got = apply_chain(stored, offset, slope, intercept, cfg)
    want = (stored.float() + offset[:, None, None, None] - 10.0) / 4.0
    torch.testing.assert_close(got, want)


def test_resize_and_channel_axis() -> None:
    stored, offset, slope, intercept = _batch()
    cfg = PreprocessConfig(resize=(2, 3, 4), add_channel=True)
    got = apply_chain(stored, offset, slope, intercept, cfg)
    assert got.shape == (3, 1, 2, 3, 4)
    constant = torch.full((2, 4, 4), 7.0, dtype=torch.float16)
    flat = apply_chain(
        constant, torch.zeros(2), torch.ones(2), torch.zeros(2), PreprocessConfig(resize=(2, 2))
    )
    assert flat.shape == (2, 2, 2) and torch.all(flat == 7.0)  # linear interpolation keeps constants


def test_chain_runs_in_float32_inside_autocast() -> None:
    stored, offset, slope, intercept = _batch()
    cfg = PreprocessConfig(clip=(-1000.0, 1000.0), normalize="range", resize=(3, 3, 3))
    plain = apply_chain(stored, offset, slope, intercept, cfg)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        inside = apply_chain(stored, offset, slope, intercept, cfg)
    assert inside.dtype == torch.float32
    torch.testing.assert_close(inside, plain)


def test_device_stage_equals_cpu_stage() -> None:
    stored, offset, slope, intercept = _batch()
    cfg = PreprocessConfig(clip=(-500.0, 500.0), normalize="range", on="device")
    raw_batch = {
        "raw": stored,
        "offset": offset,
        "slope": slope,
        "intercept": intercept,
        "index": torch.arange(3),
    }
    out = finish_batch(raw_batch, "cpu", cfg)
    assert set(out) == {"x", "index"}
    torch.testing.assert_close(out["x"], apply_chain(stored, offset, slope, intercept, cfg))
    moved = finish_batch({"x": out["x"], "key": ["a"]}, "cpu", cfg)  # already float32: only moved
    assert moved["x"] is out["x"] and moved["key"] == ["a"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_device_stage_on_gpu_copies_two_bytes() -> None:
    stored, offset, slope, intercept = _batch()
    cfg = PreprocessConfig(clip=(-500.0, 500.0), normalize="range", on="device")
    out = finish_batch({"raw": stored, "offset": offset, "slope": slope, "intercept": intercept}, "cuda", cfg)
    assert out["x"].is_cuda and out["x"].dtype == torch.float32
    torch.testing.assert_close(out["x"].cpu(), apply_chain(stored, offset, slope, intercept, cfg))


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"normalize": "range"}, "give clip"),
        ({"clip": (5.0, 1.0)}, "lo < hi"),
        ({"normalize": "zscore"}, "valid: none, range, meanstd"),
        ({"normalize": "meanstd", "std": 0.0}, "must be > 0"),
        ({"resize": (1, 2, 3, 4)}, "1 to 3"),
        ({"on": "gpu"}, "valid: cpu, device"),
    ],
)
def test_bad_config_is_a_usage_error(kwargs: dict, match: str) -> None:
    with pytest.raises(UsageError, match=match):
        PreprocessConfig(**kwargs)
