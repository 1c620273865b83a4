"""Indexed (map-style) loader: values, DDP x workers split, worker-invariant order, resume, damage."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from ampkit.data.format import load_manifest
from ampkit.data.loader_indexed import IndexedShards
from ampkit.data.phantoms import make_phantom
from ampkit.data.preprocess import PreprocessConfig
from ampkit.data.samples import ShardError
from ampkit.errors import UsageError
from ampkit.tasks.ct import make_phantom_shards

N, SIDE, PER_SHARD, SEED = 22, 8, 5, 7
ALL = [f"{i:09d}" for i in range(N)]


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_phantom_shards(tmp_path_factory.mktemp("ct") / "shards", N, SIDE, PER_SHARD, seed=SEED)


def _copy(shards: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(shards, tmp_path / "copy"))


def flip_byte(directory: Path, key: str, member: str = "bin", at: int = 3) -> str:
    """XOR one byte of sample ``key``'s ``member`` data in place; returns the shard's name."""
    for shard in load_manifest(directory)["shards"]:
        for entry in shard["samples"]:
            if entry["key"] == key:
                path = directory / shard["name"]
                data = bytearray(path.read_bytes())
                data[entry[member][0] + at] ^= 0xFF
                path.write_bytes(bytes(data))
                return str(shard["name"])
    raise KeyError(key)


def collect(batches) -> tuple[list[str], list[str]]:  # type: ignore[no-untyped-def]
    """Keys read and keys skipped, in order."""
    keys: list[str] = []
    skipped: list[str] = []
    for b in batches:
        keys += b["key"]
        skipped += b["skipped"]
    return keys, skipped


def test_values_round_trip_within_the_stored_error(shards: Path) -> None:
    ds = IndexedShards(shards, label="label")
    batch = ds.get_batch([0, 13, 21])
    assert batch["x"].dtype == torch.float32 and batch["x"].shape == (3, SIDE, SIDE, SIDE)
    for row, i in enumerate([0, 13, 21]):
        source, meta = make_phantom(SEED + i, shape=(SIDE, SIDE, SIDE))
        err = np.abs(batch["x"][row].numpy() - source).max()
        assert err <= 1.0  # fp16 of integer HU in [-1024, 3071]: exact below 2048, else within 1 HU
        assert int(batch["y"][row]) == meta["label"]
    assert batch["key"] == ["000000000", "000000013", "000000021"]
    assert ds[5]["index"].tolist() == [5]


def test_two_ranks_two_workers_read_every_sample_once(shards: Path) -> None:
    ds = IndexedShards(shards)
    seen: list[str] = []
    for rank in (0, 1):
        loader = ds.loader(4, seed=1, epoch=2, rank=rank, world_size=2, policy="uneven", num_workers=2)
        seen += collect(loader)[0]
    assert sorted(seen) == [f"{i:09d}" for i in range(N)]


@pytest.mark.filterwarnings("ignore:This DataLoader will create")
def test_order_is_the_same_with_0_1_and_3_workers(shards: Path) -> None:
    ds = IndexedShards(shards)
    orders = [collect(ds.loader(3, seed=4, rank=1, world_size=2, num_workers=k))[0] for k in (0, 1, 3)]
    assert orders[0] == orders[1] == orders[2]
    assert len(orders[0]) == 11  # pad: ceil(22 / 2)
    loader = ds.loader(3, seed=4, rank=1, world_size=2)
    loader.sampler.sampler.set_epoch(1)  # type: ignore[attr-defined]
    assert collect(loader)[0] == collect(ds.loader(3, seed=4, epoch=1, rank=1, world_size=2))[0] != orders[0]


def test_resume_mid_epoch_gives_the_remaining_samples(shards: Path) -> None:
    ds = IndexedShards(shards)
    full = collect(ds.loader(4, seed=3, num_workers=2))[0]
    consumed: list[str] = []
    for batch in ds.loader(4, seed=3, num_workers=2):  # stopped after two batches
        consumed += batch["key"]
        if len(consumed) == 8:
            break
    rest = collect(ds.loader(4, seed=3, start=len(consumed), num_workers=2))[0]
    assert consumed + rest == full


def test_device_stage_batch_matches_cpu_stage(shards: Path) -> None:
    from ampkit.data.preprocess import finish_batch

    cpu_cfg = PreprocessConfig(clip=(-1000.0, 1000.0), normalize="range", add_channel=True)
    dev_cfg = PreprocessConfig(clip=(-1000.0, 1000.0), normalize="range", add_channel=True, on="device")
    cpu = IndexedShards(shards, preprocess=cpu_cfg).get_batch([1, 2, 3])
    raw = IndexedShards(shards, preprocess=dev_cfg).get_batch([1, 2, 3])
    assert raw["raw"].dtype == torch.float16  # the 2-byte batch is what crosses the bus
    torch.testing.assert_close(finish_batch(raw, "cpu", dev_cfg)["x"], cpu["x"])


def test_flipped_byte_raise_names_shard_and_key(shards: Path, tmp_path: Path) -> None:
    damaged = _copy(shards, tmp_path)
    shard = flip_byte(damaged, "000000012")
    with pytest.raises(ShardError, match=rf"{shard}, sample 000000012: checksum mismatch") as err:
        collect(IndexedShards(damaged).loader(4, shuffle="none"))
    assert err.value.key == "000000012" and err.value.shard == shard


def test_flipped_byte_raise_through_dataloader_workers(shards: Path, tmp_path: Path) -> None:
    damaged = _copy(shards, tmp_path)
    shard = flip_byte(damaged, "000000003")
    batches = iter(IndexedShards(damaged).loader(4, shuffle="none", num_workers=2))
    with pytest.raises(ShardError, match=rf"{shard}, sample 000000003") as err:
        collect(batches)
    assert (err.value.shard, err.value.key) == (shard, "000000003")  # read back from the worker's message
    # stop the workers now: torch stalls ~5 s per worker when the cyclic GC shuts an abandoned iterator down
    batches._shutdown_workers()  # type: ignore[attr-defined]


@pytest.mark.parametrize("verify", ["shard", "sample"])
def test_flipped_byte_skip_reports_one_skipped(shards: Path, tmp_path: Path, verify: str) -> None:
    damaged = _copy(shards, tmp_path)
    flip_byte(damaged, "000000012")
    ds = IndexedShards(damaged, on_error="skip", verify=verify)  # type: ignore[arg-type]
    keys, skipped = collect(ds.loader(4, seed=2, num_workers=2))
    assert skipped == ["000000012"]
    assert sorted(keys) == [f"{i:09d}" for i in range(N) if i != 12]


def test_damaged_tar_header_costs_no_sample(shards: Path, tmp_path: Path) -> None:
    damaged = _copy(shards, tmp_path)
    flip_byte(damaged, "000000007", member="bin", at=-400)  # inside the .bin member's tar header
    keys, skipped = collect(IndexedShards(damaged, on_error="raise").loader(8, shuffle="none"))
    assert skipped == [] and keys == [f"{i:09d}" for i in range(N)]


# --- output dtypes, the device stage, memory reuse, integrity modes --------------------------


def _convert(root: Path, arrays: dict[str, np.ndarray], dtype: str, **meta: float) -> Path:
    """``arrays`` (name -> array) saved as .npz with 0-d ``meta`` and converted with ``dtype``."""
    from ampkit.data.codec import CodecOptions
    from ampkit.data.convert import ConvertOptions, convert
    from ampkit.data.sources import discover

    src = root / "src"
    src.mkdir(parents=True)
    for name, a in arrays.items():
        np.savez(src / f"{name}.npz", volume=a, **{k: np.float64(v) for k, v in meta.items()})
    offset = "auto" if dtype != "bf16" else None
    convert(
        discover([str(src)]), ConvertOptions(out=root / "out", codec=CodecOptions(dtype=dtype, offset=offset))
    )
    return root / "out"


@pytest.fixture(scope="module")
def scaled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """fp16 samples with an offset, slope and intercept: every step of the chain has work to do."""
    rng = np.random.default_rng(5)
    arrays = {f"v{i}": (rng.normal(300, 200, (4, 6, 5))).astype(np.float32) for i in range(5)}
    return _convert(tmp_path_factory.mktemp("scaled"), arrays, "fp16", slope=1.5, intercept=-1024.0)


def test_row_by_row_decoding_equals_the_batched_chain_exactly(scaled: Path) -> None:
    from ampkit.data.preprocess import apply_chain

    cfg = PreprocessConfig(clip=(-900.0, 600.0), normalize="range", add_channel=True)
    got = IndexedShards(scaled, preprocess=cfg).get_batch([4, 0, 2])
    raw = IndexedShards(scaled, output_dtype="float16").get_batch([4, 0, 2])
    assert raw["raw"].dtype == torch.float16 and bool(raw["offset"].ne(0).all())
    assert torch.all(raw["slope"] == 1.5) and torch.all(raw["intercept"] == -1024.0)
    want = apply_chain(raw["raw"], raw["offset"], raw["slope"], raw["intercept"], cfg)
    assert got["x"].shape == (3, 1, 4, 6, 5) and torch.equal(got["x"], want)


@pytest.mark.parametrize("loader", ["indexed", "stream"])
def test_two_byte_output_through_workers_widens_to_the_float32_batch(shards: Path, loader: str) -> None:
    from ampkit.data.loader_stream import StreamingShards
    from ampkit.data.preprocess import finish_batch

    cfg = PreprocessConfig(clip=(-1000.0, 1000.0), normalize="range")

    def run(**kw: object) -> list[dict]:
        if loader == "indexed":
            ds = IndexedShards(shards, preprocess=cfg, **kw)  # type: ignore[arg-type]
            return list(ds.loader(4, seed=9, num_workers=2, pin_memory=False))
        stream = StreamingShards(shards, 4, seed=9, preprocess=cfg, **kw)  # type: ignore[arg-type]
        return list(stream.loader(num_workers=2, pin_memory=False))

    wide, narrow = run(), run(output_dtype="float16")
    assert [b["key"] for b in wide] == [b["key"] for b in narrow]
    for w, n in zip(wide, narrow, strict=True):
        assert "x" not in n and n["raw"].dtype == torch.float16 and n["raw"].is_shared()
        assert torch.equal(finish_batch(n, "cpu", cfg)["x"], w["x"])


def test_two_byte_output_is_the_stored_bytes(shards: Path) -> None:
    from ampkit.data.format import read_sample

    batch = IndexedShards(shards, output_dtype="float16").get_batch([7, 3])
    info = load_manifest(shards)["shards"]
    for row, i in enumerate([7, 3]):
        stored, _ = read_sample(
            shards / info[i // PER_SHARD]["name"], info[i // PER_SHARD]["samples"][i % PER_SHARD]
        )
        assert batch["raw"][row].numpy().tobytes() == stored


def test_bf16_and_int16_storage_to_each_output_dtype(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    small = {f"s{i}": rng.integers(-300, 300, (3, 4)).astype(np.int16) for i in range(3)}
    scaled = {k: v.astype(np.float32) * np.float32(1.37) for k, v in small.items()}
    bf16 = _convert(tmp_path / "bf", {**scaled, "t": np.full((3, 4), 1e5, np.float32)}, "bf16")
    ds = IndexedShards(bf16, output_dtype="bfloat16")
    raw = ds.get_batch([0, 1, 2])["raw"]
    exact = torch.stack([torch.from_numpy(v) for v in scaled.values()])
    assert raw.dtype == torch.bfloat16 and torch.equal(raw, exact.to(torch.bfloat16))
    assert torch.equal(IndexedShards(bf16).get_batch([0, 1, 2])["x"], raw.float())  # bit-exact widening
    assert torch.equal(IndexedShards(bf16, output_dtype="float16").get_batch([0, 1, 2])["raw"], raw.half())
    with pytest.raises(UsageError, match="sample 000000003 is stored as bfloat16 with values float16 cannot"):
        IndexedShards(bf16, output_dtype="float16").get_batch([3])  # 1e5: beyond float16
    ints = _convert(tmp_path / "int", {"big": np.array([[4097, -3001]], np.int16), **small}, "int16")
    as16 = IndexedShards(ints, output_dtype="float16").get_batch([1, 2, 3])  # |v| < 2048: exact in fp16
    assert as16["raw"].dtype == torch.float16
    assert torch.equal(
        as16["raw"].float() + as16["offset"][:, None, None], IndexedShards(ints).get_batch([1, 2, 3])["x"]
    )
    with pytest.raises(UsageError, match=r"sample 000000000 is stored as int16"):
        IndexedShards(ints, output_dtype="float16").get_batch([0])  # 4097 - offset is odd and > 2048
    assert IndexedShards(ints, output_dtype="stored").get_batch([0])["raw"].dtype == torch.int16


def test_batches_are_never_overwritten_while_held_and_memory_is_reused_after(shards: Path) -> None:
    ds = IndexedShards(shards)
    held = ds.get_batch([9, 10, 11])
    before = held["x"].clone()
    for _ in range(4):  # batches the caller holds are never written again
        assert ds.get_batch([0, 1, 2])["x"].data_ptr() != held["x"].data_ptr()
    assert torch.equal(held["x"], before)
    del held
    first = ds.get_batch([0, 1, 2])
    copy, p1 = first["x"].clone(), first["x"].data_ptr()
    view = first["x"][1]
    del first
    second = ds.get_batch([3, 4, 5])  # a view still refers to the first batch: new memory
    assert second["x"].data_ptr() != p1 and torch.equal(view, copy[1])
    p2 = second["x"].data_ptr()
    del view, second
    third = ds.get_batch([6, 7, 8])  # nothing refers to the earlier batches: one is written again
    assert third["x"].data_ptr() in {p1, p2}
    arr, p3, kept = third["x"].numpy(), third["x"].data_ptr(), third["x"].clone()
    del third
    fourth = ds.get_batch([0, 1, 2])  # a numpy array holds the memory too
    assert (
        fourth["x"].data_ptr() != p3 and np.array_equal(arr, kept.numpy()) and torch.equal(fourth["x"], copy)
    )


def test_loader_pins_memory_exactly_when_cuda_is_present(shards: Path) -> None:
    from ampkit.data.loader_stream import StreamingShards

    assert IndexedShards(shards).loader(4).pin_memory == torch.cuda.is_available()
    assert StreamingShards(shards, 4).loader().pin_memory == torch.cuda.is_available()
    assert IndexedShards(shards).loader(4, pin_memory=False).pin_memory is False


def test_truncated_shard_is_skipped_and_counted(shards: Path, tmp_path: Path) -> None:
    damaged = _copy(shards, tmp_path)
    info = load_manifest(damaged)["shards"][2]
    path = damaged / info["name"]
    path.write_bytes(path.read_bytes()[: info["samples"][3]["json"][0] + 10])  # cut inside sample 3's JSON
    lost = [e["key"] for e in info["samples"][3:]]
    ds = IndexedShards(damaged, on_error="skip")
    keys, skipped = collect(ds.loader(4, shuffle="none"))
    assert skipped == lost and ds.skipped == len(lost) and keys == [k for k in ALL if k not in lost]
    with pytest.raises(
        ShardError, match=rf"{info['name']}, sample {lost[0]}: json .* past the end of the file"
    ):
        IndexedShards(damaged).get_batch([13])


def _rewrite_entries(directory: Path, change) -> None:  # type: ignore[no-untyped-def]
    import json

    manifest = json.loads((directory / "manifest.json").read_text())
    for shard in manifest["shards"]:
        for entry in shard["samples"]:
            change(directory / shard["name"], entry)
    (directory / "manifest.json").write_text(json.dumps(manifest))


@pytest.mark.parametrize("kind", ["crc32c", "sha256"])
def test_shards_with_older_checksums_still_read_and_name_the_flipped_sample(
    shards: Path, tmp_path: Path, kind: str
) -> None:
    import hashlib

    from ampkit.data.checksum import sample_crc
    from ampkit.data.format import read_member

    def to_old(path: Path, e: dict) -> None:  # what shards written before XXH3 carry
        with open(path, "rb") as fh:
            b, j = read_member(fh, e["bin"]), read_member(fh, e["json"])
        e[kind] = sample_crc(b, j) if kind == "crc32c" else hashlib.sha256(b + j).hexdigest()
        del e["xxh3"]

    old = _copy(shards, tmp_path / "old")
    _rewrite_entries(old, to_old)
    want = IndexedShards(shards).get_batch([3, 11, 12])["x"].clone()
    assert torch.equal(IndexedShards(old).get_batch([3, 11, 12])["x"], want)
    shard = flip_byte(old, "000000012")
    with pytest.raises(ShardError, match=rf"{shard}, sample 000000012: checksum mismatch: {kind}"):
        IndexedShards(old).get_batch([11, 12])


def test_shards_without_per_sample_checksums_fall_back_to_the_shard_hash(
    shards: Path, tmp_path: Path
) -> None:
    none = _copy(shards, tmp_path / "none")
    _rewrite_entries(none, lambda _p, e: e.pop("xxh3"))
    shard = flip_byte(none, "000000012")
    # the shard's sha256 fails and no sample has a checksum to clear it: the whole shard is refused
    with pytest.raises(ShardError, match=rf"{shard}, sample 000000010: shard sha256 mismatch; no checksum"):
        IndexedShards(none).get_batch([12])
    ds = IndexedShards(none, on_error="skip")
    assert collect([ds.get_batch([9, 12, 15])]) == (["000000009", "000000015"], ["000000012"])


def test_verify_off_trusts_the_bytes_and_shard_adds_the_file_hash(
    shards: Path, tmp_path: Path, caplog
) -> None:  # type: ignore[no-untyped-def]
    damaged = _copy(shards, tmp_path)
    flip_byte(damaged, "000000007", member="bin", at=-400)  # a tar header: no sample is to blame
    flip_byte(damaged, "000000016")
    assert IndexedShards(damaged, verify="off").get_batch([16])["key"] == ["000000016"]
    with caplog.at_level("WARNING", logger="ampkit.data"):
        assert IndexedShards(damaged, verify="shard").get_batch([7])["key"] == ["000000007"]
    assert "sha256 mismatch outside sample data" in caplog.text
    with pytest.raises(ShardError, match=r"sample 000000016: shard sha256 mismatch; checksum mismatch: xxh3"):
        IndexedShards(damaged, verify="shard").get_batch([15])  # the whole shard is suspect at open


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"output_dtype": "float64"}, "valid: float32, float16, bfloat16, stored"),
        ({"verify": "fast"}, "valid: sample, shard, off"),
        ({"on_error": "ignore"}, "valid: raise, skip"),
        (
            {"output_dtype": "float32", "preprocess": PreprocessConfig(on="device")},
            "valid: output_dtype float16",
        ),
    ],
)
def test_bad_loader_options_are_usage_errors(shards: Path, kwargs: dict, match: str) -> None:
    from ampkit.data.loader_stream import StreamingShards

    with pytest.raises(UsageError, match=match):
        IndexedShards(shards, **kwargs)
    with pytest.raises(UsageError, match=match):
        StreamingShards(shards, 2, **kwargs)


def test_a_used_dataset_pickles_for_spawned_workers(shards: Path) -> None:
    import pickle

    from ampkit.data.loader_stream import StreamingShards

    for ds in (IndexedShards(shards), StreamingShards(shards, 3)):
        first = ds.get_batch([2, 9]) if isinstance(ds, IndexedShards) else next(iter(ds))
        copy = pickle.loads(pickle.dumps(ds))  # open files, buffers and batch memory stay behind
        again = copy.get_batch([2, 9]) if isinstance(ds, IndexedShards) else next(iter(copy))
        assert torch.equal(first["x"], again["x"]) and again["key"] == first["key"]
