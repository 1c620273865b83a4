"""What the data code reads from a shard folder: special files refused by name (H2), a manifest cap a
10-million-sample manifest fits in, keys given twice refused (L11), shapes and scales bounded (L9, L10)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from ampkit.data import limits, schema
from ampkit.data.convert import ConvertOptions, convert
from ampkit.data.format import load_manifest
from ampkit.data.sources import discover
from ampkit.errors import UsageError


@pytest.fixture
def ds(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    src.mkdir()
    for i in range(4):
        np.save(src / f"v{i}.npy", np.random.default_rng(i).normal(size=(4, 4)).astype(np.float32))
    convert(discover([str(src)]), ConvertOptions(out=tmp_path / "ds", samples_per_shard=2))
    return tmp_path / "ds"


def _fifo(path: Path) -> None:
    path.unlink()
    os.mkfifo(path)


def _dev_zero(path: Path) -> None:
    path.unlink()
    path.symlink_to("/dev/zero")


def _padded(path: Path) -> None:
    with open(path, "a") as fh:
        fh.write(" " * (2 << 20))


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        (_fifo, "manifest.json: not a regular file"),
        (_dev_zero, "manifest.json: not a regular file"),
        (_padded, "more than the 1,0"),
    ],
    ids=["fifo", "dev-zero", "over-its-cap"],
)
@pytest.mark.parametrize("loader", ["IndexedShards", "StreamingShards"])
def test_loaders_refuse_a_special_or_oversized_manifest_by_name(
    ds: Path, change: Callable[[Path], None], needle: str, loader: str
) -> None:
    import ampkit.data

    change(ds / "manifest.json")
    with pytest.raises(UsageError, match=needle):
        if loader == "IndexedShards":
            ampkit.data.IndexedShards(ds)
        else:
            ampkit.data.StreamingShards(ds, batch_size=2)


def test_a_ten_million_sample_manifest_fits_the_cap_and_padding_does_not(ds: Path) -> None:
    manifest = load_manifest(ds)
    written = len((ds / "manifest.json").read_bytes())
    shard_bytes = sum((ds / s["name"]).stat().st_size for s in manifest["shards"])
    limit, why = limits.manifest_limit(ds)
    assert limit == limits.MANIFEST_BASE_BYTES + shard_bytes // limits.MIN_SAMPLE_BYTES * 256
    assert written < limit and "1 MiB + 256 bytes per sample" in why
    # a shard of 1000 samples as convert writes it into the manifest, offsets and sizes of a 1 TB folder
    entry = {"bin": [10**12, 10**7], "json": [10**12 + 10**7, 999], "key": "009999999", "xxh3": "f" * 16}
    shard = {**manifest["shards"][0], "count": 1000, "samples": [entry] * 1000}
    text = json.dumps({**manifest, "shards": [shard] * 10}, sort_keys=True, indent=1)  # as write_manifest
    per_sample = (len(text) - written) / 10_000
    assert 150 < per_sample < limits.MANIFEST_BYTES_PER_SAMPLE * 0.8  # ~180 bytes: room to spare
    ten_million = limits.MANIFEST_BASE_BYTES + 10_000_000 * limits.MANIFEST_BYTES_PER_SAMPLE
    assert limits.MANIFEST_MAX_SAMPLES == 10_000_000 and written + 10_000_000 * per_sample < ten_million


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ('{"a": 1, "a": 2}', "key 'a' appears twice"),
        ('{"a": {"b": 1, "c": 2, "b": 1}}', "key 'b' appears twice"),
        ('[{"k": 1}, {"k": 2, "k": 3}]', "key 'k' appears twice"),
        ('{"a": 1', "not valid JSON"),
        ("\ufeff{}", "Unexpected UTF-8 BOM"),
        ("[" * 100_000, "nested too deeply"),
    ],
)
def test_parse_json_refuses_a_key_given_twice_and_names_the_file(text: str, needle: str) -> None:
    with pytest.raises(ValueError, match=f"^x.json: .*{needle}"):
        schema.parse_json(text, "x.json")


def test_parse_json_reads_what_json_loads_reads() -> None:
    assert schema.parse_json(b'\xef\xbb\xbf{"a": [1, {"b": 2}]}', "x") == {"a": [1, {"b": 2}]}
    assert schema.parse_json('{"a": 1, "b": {"a": 2}}', "x") == {"a": 1, "b": {"a": 2}}  # one key per object


@pytest.mark.parametrize(
    ("shape", "needle"),
    [
        ([0, 10**30], r"s\[1\] is 1000000000000000000000000000000, more than 2\*\*48"),
        ([2**24, 2**24, 2], r"holds more than 2\*\*48 values"),
        ([2**49], r"s\[0\] is 562949953421312, more than 2\*\*48"),
        ([-1], "not a non-negative integer"),
        ([1.5], "not a non-negative integer"),
    ],
)
def test_shapes_are_bounded_before_anything_is_sized_by_them(shape: list[int], needle: str) -> None:
    with pytest.raises(ValueError, match=needle):
        schema.shape(shape, "s")


def test_shapes_up_to_the_bound_pass() -> None:
    assert schema.shape([2**24, 2**24], "s") == [2**24, 2**24] and schema.shape([0, 2**48], "s") == [0, 2**48]


@pytest.mark.parametrize("value", [1e300, -1e39, 3.5e38])
def test_scales_beyond_float32_are_refused(value: float) -> None:
    with pytest.raises(ValueError, match="beyond the float32 range"):
        schema.float32_number(value, "slope")
    assert schema.float32_number(3.4e38, "slope") == 3.4e38
