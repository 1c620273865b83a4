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
from ampkit.tasks.ct import make_phantom_shards

N, SIDE, PER_SHARD, SEED = 22, 8, 5, 7


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
    with pytest.raises(ShardError, match=rf"{shard}, sample 000000003") as err:
        collect(IndexedShards(damaged).loader(4, shuffle="none", num_workers=2))
    assert (err.value.shard, err.value.key) == (shard, "000000003")  # read back from the worker's message


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
