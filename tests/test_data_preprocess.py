"""The float32 chain: rescale, clip, normalise, resize; the 2-byte device stage; config errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ampkit.data.preprocess import PreprocessConfig, apply_chain, finish_batch, reshape, scale_
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


@pytest.mark.parametrize(
    "cfg",
    [
        PreprocessConfig(clip=(-900.0, 700.0), normalize="range", add_channel=True),
        PreprocessConfig(normalize="meanstd", mean=3.0, std=7.0),
        PreprocessConfig(rescale=False, clip=(-5.0, 5.0)),
    ],
)
def test_row_by_row_scaling_equals_the_batched_chain_bit_for_bit(cfg: PreprocessConfig) -> None:
    # the loaders widen and scale each sample into its batch row (scalars); finish_batch runs the batch (vectors)
    stored, offset, slope, intercept = _batch()
    rows = torch.empty(stored.shape)
    for i in range(len(stored)):
        rows[i].copy_(stored[i])
        scale_(rows[i], float(offset[i]), float(slope[i]), float(intercept[i]), cfg)
    assert torch.equal(reshape(rows, cfg), apply_chain(stored, offset, slope, intercept, cfg))


def test_device_stage_widens_bfloat16_and_int16_exactly() -> None:
    values = torch.tensor([[-3.0e38, 1.5, 2.0**-130], [0.0, -1.0, 3.0e4]]).to(torch.bfloat16)
    zeros, ones = torch.zeros(2), torch.ones(2)
    batch = {"raw": values, "offset": zeros, "slope": ones, "intercept": zeros}
    assert torch.equal(finish_batch(batch, "cpu", PreprocessConfig())["x"], values.float())
    ints = torch.tensor([[-32768, 32767, 5]], dtype=torch.int16)
    batch = {
        "raw": ints,
        "offset": torch.tensor([100.0]),
        "slope": torch.ones(1),
        "intercept": torch.zeros(1),
    }
    assert finish_batch(batch, "cpu", PreprocessConfig())["x"].tolist() == [[-32668.0, 32867.0, 105.0]]


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
