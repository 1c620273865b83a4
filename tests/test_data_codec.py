"""Codec: bf16 rounding, exact integer storage, fp16 error bounds, overflow/non-finite handling, auto choice."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ampkit.data import codec_ref, fused
from ampkit.data.codec import CodecOptions, SampleError, encode, float32_to_bf16_bits
from ampkit.data.format import widen
from ampkit.errors import UsageError


def _decoded(enc) -> np.ndarray:  # type: ignore[no-untyped-def]
    return widen(enc.data, enc.dtype, enc.offset)


def _integer_hu(seed: int = 0, shape=(24, 24, 24)) -> np.ndarray:  # type: ignore[no-untyped-def]
    x = np.random.default_rng(seed).integers(-1024, 3072, size=shape).astype(np.float32)
    x.flat[:2] = (-1024, 3071)  # both ends of the 12-bit CT range
    return x


def _float_hu(seed: int = 1, shape=(24, 24, 24)) -> np.ndarray:  # type: ignore[no-untyped-def]
    return np.random.default_rng(seed).uniform(-1024, 3071, size=shape)  # float64 source


def test_bf16_rounding_matches_torch_round_to_nearest_even() -> None:
    x = np.random.default_rng(0).normal(scale=1e3, size=20000).astype(np.float32)
    # ties: exactly half-way between two bf16 values, both parities of the kept last bit
    ties = np.array([0x3F808000, 0x3F818000, 0xBF808000, 0x7F7F8000], dtype=np.uint32).view(np.float32)
    x = np.concatenate([x, ties, np.array([0.0, -0.0, np.inf, -np.inf], dtype=np.float32)])
    ours = float32_to_bf16_bits(x)
    theirs = torch.from_numpy(x).to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)
    np.testing.assert_array_equal(ours, theirs)
    assert np.isnan(widen(float32_to_bf16_bits(np.array([np.nan], np.float32)), "bfloat16", 0.0)).all()


@pytest.mark.parametrize(("dtype", "offset"), [("int16", None), ("fp16", "auto"), ("auto", None)])
def test_integer_hu_round_trip_is_exact(dtype: str, offset: str | None) -> None:
    x = _integer_hu()
    enc = encode(x, CodecOptions(dtype=dtype, offset=offset), "s")
    np.testing.assert_array_equal(_decoded(enc), x)
    assert enc.max_abs == 0.0 and enc.max_rel == 0.0
    if dtype == "fp16":
        assert enc.dtype == "float16" and enc.offset in (
            1023.0,
            1024.0,
        )  # middle of [-1024, 3071], an integer
    else:
        assert enc.dtype == "int16"


def test_integer_hu_in_fp16_without_offset_is_not_exact() -> None:
    """Why --offset exists: above 2048, fp16 holds only even integers."""
    enc = encode(_integer_hu(), CodecOptions(dtype="fp16"), "s")
    assert enc.max_abs == 1.0


def test_float_hu_fp16_error_is_half_spacing_round_to_nearest() -> None:
    x = _float_hu()
    enc = encode(x, CodecOptions(dtype="fp16"), "s")
    err = np.abs(_decoded(enc).astype(np.float64) - x)
    for lo, hi, bound in ((512, 1024, 0.25), (1024, 2048, 0.5), (2048, 4096, 1.0)):
        band = (np.abs(x) >= lo) & (np.abs(x) < hi)
        assert band.sum() > 100 and err[band].max() <= bound
    # the recorded figures equal a plain numpy recomputation
    rel = err[x != 0] / np.abs(x[x != 0])
    assert enc.max_abs == err.max() and enc.max_rel == rel.max()


def test_overflow_names_the_sample_or_clips_with_counts() -> None:
    x = np.array([1.0, 7e4, -1e5, 65519.0])  # 65519 still rounds to 65504: not an overflow
    with pytest.raises(SampleError, match=r"sample vol-7: 2 values beyond the float16 range"):
        encode(x, CodecOptions(dtype="fp16"), "vol-7")
    enc = encode(x, CodecOptions(dtype="fp16", on_overflow="clip"), "vol-7")
    assert enc.clipped == 2
    np.testing.assert_array_equal(_decoded(enc), [1.0, 65504.0, -65504.0, 65504.0])
    with pytest.raises(SampleError, match="int16 range"):
        encode(np.array([40000.0]), CodecOptions(dtype="int16"), "s")


def test_nonfinite_is_an_error_unless_kept() -> None:
    x = np.array([1.5, np.nan, np.inf], dtype=np.float32)
    with pytest.raises(SampleError, match=r"sample a\.b: 2 NaN/Inf"):
        encode(x, CodecOptions(), "a.b")
    enc = encode(x, CodecOptions(dtype="fp16", on_nonfinite="keep"), "a.b")
    out = _decoded(enc)
    assert out[0] == 1.5 and np.isnan(out[1]) and out[2] == np.inf and enc.max_abs == 0.0


def test_auto_choice_and_reason() -> None:
    ints = encode(_integer_hu(), CodecOptions(dtype="auto"), "s")
    assert ints.dtype == "int16" and "int16 is exact" in ints.reason
    floats = encode(_float_hu(), CodecOptions(dtype="auto"), "s")
    assert floats.dtype == "float16" and "fp16 max abs error" in floats.reason and floats.max_abs <= 1.0
    wide = encode(np.array([1.5, 2e5, -3e6]), CodecOptions(dtype="auto"), "s")
    assert wide.dtype == "bfloat16" and "beyond the fp16 range" in wide.reason and wide.max_rel <= 2**-8
    with pytest.raises(SampleError, match="no 2-byte dtype within tolerance"):
        encode(_float_hu(), CodecOptions(dtype="auto", max_abs_error=1e-3, max_rel_error=1e-5), "s")


def test_int16_needs_integers_and_options_are_checked() -> None:
    with pytest.raises(SampleError, match="int16 needs integer values"):
        encode(np.array([0.5]), CodecOptions(dtype="int16"), "s")
    with pytest.raises(UsageError, match="unknown dtype"):
        CodecOptions(dtype="fp8")
    with pytest.raises(UsageError, match="offset"):
        CodecOptions(offset="middle")


# --- the fused float32 pass equals the float64 reference (bytes and figures) ---

_STORED = {"fp16": "float16", "bf16": "bfloat16", "int16": "int16"}


def _reference(x: np.ndarray, dtype: str, offset: float) -> tuple[np.ndarray, float, float]:
    """The pre-fusion definition: float64 ``x - offset`` rounded once, errors in float64."""
    stored = codec_ref.round_to(x.reshape(-1).astype(np.float64) - offset, dtype)
    return (stored, *codec_ref.error_stats(x, stored, dtype, offset))


_DATA = {
    "float HU": lambda r: r.uniform(-1024, 3071, 70000),
    "integer HU": lambda r: r.integers(-1024, 3072, 70000).astype(np.float64),
    "tiny normal": lambda r: r.normal(scale=1e-3, size=70000),
    "quarters with zeros": lambda r: np.where(
        r.random(70000) < 0.1, 0.0, np.round(r.uniform(-900, 900, 70000) * 4) / 4
    ),
    "wide exponents": lambda r: r.normal(size=70000) * 2.0 ** r.integers(-40, 14, 70000),
}
_ROWS = [
    ("float HU", "float32", "fp16", 0.0),
    ("float HU", "float32", "fp16", 1023.5),
    ("float HU", "float32", "bf16", 0.0),
    ("float HU", "float32", "bf16", -7.25),
    ("float HU", "float64", "fp16", 1023.5),
    ("float HU", "float16", "bf16", 0.0),
    ("integer HU", "float32", "int16", 0.0),
    ("integer HU", "float32", "int16", 1024.0),
    ("integer HU", "int16", "fp16", 1024.0),
    ("integer HU", "float64", "int16", -3.0),
    ("tiny normal", "float32", "fp16", 0.0),
    ("tiny normal", "float32", "fp16", 0.5),
    ("tiny normal", "float32", "bf16", 0.0),
    ("quarters with zeros", "float32", "fp16", 0.1),
    ("quarters with zeros", "float32", "bf16", 1.0),
    ("wide exponents", "float32", "fp16", 0.0),
    ("wide exponents", "float32", "bf16", 3.0),
    ("wide exponents", "float64", "bf16", 0.0),
]


@pytest.mark.parametrize(
    ("data", "source", "dtype", "offset"), _ROWS, ids=["-".join(map(str, r)) for r in _ROWS]
)
def test_fused_pass_equals_float64_reference(
    monkeypatch: pytest.MonkeyPatch, data: str, source: str, dtype: str, offset: float
) -> None:
    monkeypatch.setattr(fused, "CHUNK", 4096)  # many chunks: running maxima and chunk seams are exercised
    x = _DATA[data](np.random.default_rng(len(data))).astype(source)
    offset = float(np.float32(offset))
    enc = encode(x, CodecOptions(dtype=dtype, offset=offset), "s")
    stored, max_abs, max_rel = _reference(x, _STORED[dtype], offset)
    np.testing.assert_array_equal(enc.data.reshape(-1).view(np.uint16), stored.view(np.uint16))
    assert (enc.max_abs, enc.max_rel) == (max_abs, max_rel)  # exactly, not approximately
    assert enc.range == (float(x.min()), float(x.max()))
    exact = data == "integer HU"  # integers within fp16's or int16's exact range
    assert (enc.max_abs > 0 and enc.max_rel > 0) != exact  # a real round trip (no cast rounded away)


def test_offset_difference_is_rounded_once_to_fp16() -> None:
    """``x - offset`` lands on an fp16 tie in float32 but not exactly: the stored value must round up."""
    x = np.full(8, 2.0**-11 + 2.0**-30, np.float32)  # x + 1 = 1 + 2**-11 + 2**-30: above the tie
    enc = encode(x, CodecOptions(dtype="fp16", offset=-1.0), "s")
    assert float(enc.data[0]) == 1 + 2.0**-10  # float32 arithmetic alone gives the tie, rounded to 1.0
    assert enc.max_abs == 2.0**-11 - 2.0**-30 <= 2.0**-11  # within half the fp16 spacing


def test_int16_refuses_a_difference_float32_would_round_to_an_integer() -> None:
    x = np.array([1e-9, 2.0, 3.0], np.float32)  # 1e-9 + 5 is 5.0 in float32, not an integer in fact
    with pytest.raises(SampleError, match="int16 needs integer values"):
        encode(x, CodecOptions(dtype="int16", offset=-5.0), "s")


def test_refusals_count_the_whole_sample_and_nan_comes_first(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fused, "CHUNK", 64)
    x = np.ones(1000, np.float32)
    x[[3, 500, 900]] = 7e4
    with pytest.raises(SampleError, match=r"3 values beyond the float16 range .*\(e\.g\. 70000\)"):
        encode(x, CodecOptions(dtype="fp16"), "s")
    enc = encode(x, CodecOptions(dtype="fp16", on_overflow="clip"), "s")
    assert enc.clipped == 3 and enc.max_abs == 70000 - 65504
    x[999] = np.nan  # a NaN in the last chunk is reported before the overflow in the first
    with pytest.raises(SampleError, match="1 NaN/Inf values"):
        encode(x, CodecOptions(dtype="fp16"), "s")
    kept = encode(x, CodecOptions(dtype="fp16", on_nonfinite="keep", on_overflow="clip"), "s")
    assert kept.nonfinite == 1 and kept.clipped == 3 and np.isnan(_decoded(kept)[999])
    assert kept.range == (1.0, 70000.0)


def test_encoding_leaves_torch_threads_as_found() -> None:
    before = torch.get_num_threads()
    encode(np.zeros(10, np.float32), CodecOptions(dtype="fp16"), "s")
    assert torch.get_num_threads() == before


_F16_VALUES = np.linspace(0.0, 20.89, 20).astype(
    np.float16
)  # off-centre: the range middle would lower the bound


@pytest.mark.parametrize(
    ("x", "offset"),
    [
        (_F16_VALUES, 0.0),  # a float16 source: exact as it is (M7)
        (_F16_VALUES.astype(np.float32), 0.0),  # float16 values held in float32: the same
        (
            np.concatenate([_F16_VALUES.astype(np.float64), np.full(5000, 7.25)]),
            0.0,
        ),  # exact beyond the first probe
        (
            np.concatenate([np.full(5000, 7.25), [7.2501]]),
            None,
        ),  # one inexact value at the very end: the middle
        (
            np.linspace(1000.0, 1100.0, 50, dtype=np.float32) + 0.01,
            None,
        ),  # ordinary data: the middle still wins
    ],
    ids=[
        "float16-source",
        "float16-values-in-float32",
        "float16-values-long",
        "one-inexact-value",
        "ordinary",
    ],
)
def test_auto_keeps_float16_values_exact_with_offset_zero(x: np.ndarray, offset: float | None) -> None:
    enc = encode(x, CodecOptions(dtype="auto"), "x")
    assert enc.dtype == "float16"
    if offset is None:  # offset 0 would be inexact here: the range middle lowers the error bound
        assert enc.offset != 0.0 and enc.max_abs > 0
    else:
        assert enc.offset == offset and enc.max_abs == 0.0 and enc.max_rel == 0.0
        np.testing.assert_array_equal(_decoded(enc), x.astype(np.float32))
