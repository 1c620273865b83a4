"""Format: names, index member skipped by webdataset, data offsets, decoding, manifest rebuild."""

from __future__ import annotations

import hashlib
import io
import json
import re
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from webdataset.tariterators import tar_file_iterator

from ampkit.data import schema
from ampkit.data.checksum import KINDS, crc32c, mismatch, sample_check, sample_crc, sample_xxh3
from ampkit.data.codec import CodecOptions
from ampkit.data.convert import ConvertOptions, convert
from ampkit.data.format import (
    INDEX_MEMBER,
    decode_array,
    decode_tensor,
    dumps,
    load_manifest,
    read_index,
    read_member,
    read_sample,
    rebuild_manifest,
    sample_key,
    shard_name,
    shard_paths,
    tmp_name,
)
from ampkit.data.shardwriter import ShardWriter
from ampkit.data.sources import discover


@pytest.fixture(scope="module")
def shard_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("fmt")
    rng = np.random.default_rng(0)
    np.save(root / "a.npy", rng.integers(-1024, 3072, size=(5, 6, 7)).astype(np.int16))
    np.save(root / "b.npy", rng.uniform(-1000, 1000, size=(3, 4)).astype(np.float32))
    np.save(root / "c.npy", np.array([1.5, 3e5, -2e6]))
    convert(
        discover([str(root / n) for n in ("a.npy", "b.npy", "c.npy")]),
        ConvertOptions(out=root / "out", codec=CodecOptions(dtype="auto"), samples_per_shard=2),
    )
    return root / "out"


def test_names() -> None:
    assert sample_key(42) == "000000042" and "." not in sample_key(7)
    assert shard_name(3) == "shard-000003.tar" and tmp_name(3) == ".shard-000003.tar.tmp"


def test_index_member_is_last_and_skipped_by_webdataset(shard_dir: Path) -> None:
    path = shard_paths(shard_dir)[0]
    with tarfile.open(path) as tf:
        names = tf.getnames()
    assert names == ["000000000.bin", "000000000.json", "000000001.bin", "000000001.json", INDEX_MEMBER]
    with open(path, "rb") as fh:
        seen = [s["fname"] for s in tar_file_iterator(fh)]
    assert seen == names[:-1]
    # the name matters: webdataset's default skip_meta regex needs the name to end after "__"
    assert re.match(r"__[^/]*__($|/)", INDEX_MEMBER) and not re.match(r"__[^/]*__($|/)", "__index__.json")


def test_index_offsets_are_tarfile_data_offsets(shard_dir: Path) -> None:
    for path in shard_paths(shard_dir):
        index = read_index(path)
        with tarfile.open(path) as tf:
            members = {m.name: m for m in tf.getmembers()}
        for entry in index["samples"]:
            for kind in ("bin", "json"):
                member = members[f"{entry['key']}.{kind}"]
                assert entry[kind] == [member.offset_data, member.size]
                assert member.mtime == 0 and member.uid == member.gid == 0 and member.mode == 0o644
                assert member.uname == member.gname == ""


def test_decode_array_and_tensor_agree(shard_dir: Path) -> None:
    manifest = load_manifest(shard_dir)
    dtypes = set()
    for shard in manifest["shards"]:
        for entry in shard["samples"]:
            bin_bytes, meta = read_sample(shard_dir / shard["name"], entry)
            values = decode_array(bin_bytes, meta)
            raw, offset = decode_tensor(bin_bytes, meta)
            assert values.dtype == np.float32 and list(values.shape) == meta["shape"]
            assert raw.element_size() == 2 and str(raw.dtype).endswith(meta["dtype"])
            np.testing.assert_array_equal((raw.float() + offset).numpy(), values)
            dtypes.add(meta["dtype"])
            assert json.loads(json.dumps(meta)) == meta
    assert dtypes == {"int16", "float16", "bfloat16"}
    assert manifest["dtype_counts"] == {"bfloat16": 1, "float16": 1, "int16": 1}


def test_decode_tensor_bf16_is_torch_bfloat16() -> None:
    x = torch.tensor([1.0, -2.5, 300.0], dtype=torch.bfloat16)
    raw, offset = decode_tensor(x.view(torch.int16).numpy().tobytes(), {"dtype": "bfloat16", "shape": [3]})
    assert raw.dtype == torch.bfloat16 and torch.equal(raw, x) and offset == 0.0


def test_rebuild_manifest_equals_written(shard_dir: Path, tmp_path: Path) -> None:
    written = load_manifest(shard_dir)
    assert rebuild_manifest(shard_dir, write=False) == written
    assert written["total_samples"] == 3 and len(written["shards"]) == 2


def test_load_manifest_rejects_foreign_format(tmp_path: Path) -> None:
    (tmp_path / "manifest.json").write_text('{"format": "other/9"}')
    with pytest.raises(ValueError, match="ampkit-shards/1"):
        load_manifest(tmp_path)


def test_decode_checks_sizes() -> None:
    with pytest.raises(ValueError, match="shape"):
        decode_array(b"\x00" * 6, {"key": "k", "dtype": "float16", "shape": [2, 2]})
    with pytest.raises(ValueError, match="unknown stored dtype"):
        decode_array(b"\x00" * 8, {"key": "k", "dtype": "float8", "shape": [2, 2]})


# --- integrity fields: XXH3 per sample (CRC-32C, sha256 in older shards), sha256 of the whole shard ---


def test_crc32c_is_castagnoli_and_extends_over_any_buffer() -> None:
    assert crc32c(b"123456789") == 0xE3069283  # the CRC-32C check value (RFC 3720)
    data = np.arange(1000, dtype=np.float16)
    whole = crc32c(data.tobytes() + b'{"k":1}')
    assert sample_crc(data, b'{"k":1}') == whole == crc32c(b'{"k":1}', crc32c(memoryview(data.tobytes())))
    assert sample_crc(bytearray(data.tobytes()), b'{"k":2}') != whole


def test_xxh3_is_xxhash_0_8_and_covers_bin_then_json() -> None:
    import xxhash

    assert sample_xxh3(b"", b"") == "2d06800538d394c2"  # XXH3-64 of nothing, seed 0 (xxHash 0.8 test vector)
    data = np.arange(1000, dtype=np.float16)
    whole = sample_xxh3(data.tobytes() + b'{"k":1}', b"")
    assert sample_xxh3(data, b'{"k":1}') == whole == xxhash.xxh3_64_hexdigest(data.tobytes() + b'{"k":1}')
    assert sample_xxh3(memoryview(data.tobytes()), b'{"k":2}') != whole
    assert len(whole) == 16 and int(whole, 16) >= 0


def _entry_with(kind: str, bin_bytes: bytes, json_bytes: bytes) -> dict:
    digest = {"xxh3": sample_xxh3, "crc32c": sample_crc}.get(kind)
    value = digest(bin_bytes, json_bytes) if digest else hashlib.sha256(bin_bytes + json_bytes).hexdigest()
    return {"key": "000000000", "bin": [512, len(bin_bytes)], "json": [1536, len(json_bytes)], kind: value}


@pytest.mark.parametrize("kind", KINDS)
def test_every_checksum_kind_passes_its_bytes_and_names_a_flipped_one(kind: str) -> None:
    data, meta = np.linspace(-1, 1, 4096).astype(np.float16).tobytes(), b'{"key":"000000000"}'
    entry = _entry_with(kind, data, meta)
    assert sample_check(entry) == kind and mismatch(data, meta, entry) is None
    flipped = bytearray(data)
    flipped[1234] ^= 0x10
    assert mismatch(bytes(flipped), meta, entry).startswith(f"checksum mismatch: {kind} ")
    assert mismatch(data, meta + b" ", entry).startswith(
        f"checksum mismatch: {kind} "
    )  # the JSON is covered too


def test_the_fastest_checksum_present_is_the_one_checked() -> None:
    data, meta = b"\x01\x02" * 100, b"{}"
    entry = {**_entry_with("crc32c", data, meta), "xxh3": "0" * 16}  # a wrong xxh3 beside a right crc32c
    assert sample_check(entry) == "xxh3" and "xxh3" in mismatch(data, meta, entry)


def test_index_entries_carry_xxh3_of_bin_and_json(shard_dir: Path) -> None:
    manifest = load_manifest(shard_dir)
    for shard in manifest["shards"]:
        path = shard_dir / shard["name"]
        assert shard["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
        assert read_index(path)["samples"] == shard["samples"]
        with open(path, "rb") as fh:
            for entry in shard["samples"]:
                assert set(entry) == {"key", "bin", "json", "xxh3"}  # one per-sample checksum
                bin_bytes, json_bytes = read_member(fh, entry["bin"]), read_member(fh, entry["json"])
                assert entry["xxh3"] == sample_xxh3(bin_bytes, json_bytes)


def test_shard_bytes_are_what_tarfile_writes(tmp_path: Path) -> None:
    """The writer emits tar itself (to hash every byte); the bytes must equal tarfile's, member by member."""
    samples = [("000000000", np.arange(300, dtype=np.float16), b'{"a":1}'), ("000000001", b"", b"{}")]
    writer = ShardWriter(tmp_path, 0)
    for key, data, meta in samples:
        writer.add(key, data, meta)
    path = writer.close()
    members = [
        (f"{k}.{ext}", bytes(memoryview(b).cast("B")))
        for k, d, m in samples
        for ext, b in (("bin", d), ("json", m))
    ]
    members.append((INDEX_MEMBER, dumps({"shard": writer.name, "samples": writer.samples, "count": 2})))
    expected = io.BytesIO()
    with tarfile.open(fileobj=expected, mode="w", format=tarfile.USTAR_FORMAT) as tf:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime, info.uid, info.gid, info.uname, info.gname = (
                len(data),
                0o644,
                0,
                0,
                0,
                "",
                "",
            )
            tf.addfile(info, io.BytesIO(data))
    assert path.read_bytes() == expected.getvalue()
    assert writer.entry()["sha256"] == hashlib.sha256(expected.getvalue()).hexdigest()
    assert writer.entry()["bytes"] == len(expected.getvalue()) and len(expected.getvalue()) % 10240 == 0


@pytest.mark.parametrize(
    ("crc", "ok"),
    [(0, True), (2**32 - 1, True), (-1, False), (2**32, False), (True, False), ("12", False), (1.0, False)],
)
def test_index_schema_checks_crc32c(crc: object, ok: bool) -> None:
    entry = {"key": "000000000", "bin": [512, 2], "json": [1536, 2], "crc32c": crc}
    if ok:
        assert schema.entry(entry, "e")["crc32c"] == crc
    else:
        with pytest.raises(ValueError, match=r"e\.crc32c is .*not a CRC-32C"):
            schema.entry(entry, "e")


@pytest.mark.parametrize(
    ("value", "ok"),
    [("0123456789abcdef", True), ("0" * 16, True), ("0123456789ABCDEF", True), ("0" * 15, False),
     ("0" * 17, False), (12345, False), ("g" * 16, False), (None, True)],
)  # fmt: skip
def test_index_schema_checks_xxh3(value: object, ok: bool) -> None:
    entry = {"key": "000000000", "bin": [512, 2], "json": [1536, 2], "xxh3": value}
    if ok:
        assert schema.entry(entry, "e")["xxh3"] == value
    else:
        with pytest.raises(ValueError, match=r"e\.xxh3 is .*not an XXH3"):
            schema.entry(entry, "e")


def test_old_entries_with_sha256_only_still_read() -> None:
    entry = {"key": "000000000", "bin": [512, 2], "json": [1536, 2], "sha256": "ab" * 32}
    assert schema.entry(entry, "e") == entry and sample_check(entry) == "sha256"
    assert sample_check({**entry, "crc32c": 7}) == "crc32c"
    assert sample_check({**entry, "crc32c": 7, "xxh3": "0" * 16}) == "xxh3"
    with pytest.raises(ValueError, match="none of xxh3, crc32c, sha256"):
        sample_check({"key": "k"})


@pytest.mark.parametrize(
    "name", [".shard-000001.tar.tmp\n", "shard-000001.tar\n", "x.shard-000001.tar.tmp", ".shard-1.tar.tmp"]
)
def test_file_name_patterns_match_whole_names_only(name: str) -> None:
    """A trailing newline (``$`` would allow it) or a prefix never makes a name look like ampkit's."""
    from ampkit.data.format import TMP_RE
    from ampkit.data.schema import SHARD_RE

    assert not TMP_RE.match(name) and not SHARD_RE.match(name)
    assert TMP_RE.match(".shard-000001.tar.tmp") and SHARD_RE.match("shard-000001.tar")
