"""Streaming loader (webdataset pipeline): split, order, resume, truncated and damaged shards."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from ampkit.data.format import load_manifest
from ampkit.data.loader_indexed import IndexedShards
from ampkit.data.loader_stream import StreamingShards
from ampkit.data.samples import ShardError
from ampkit.tasks.ct import make_phantom_shards

N, SIDE, PER_SHARD = 22, 8, 5
ALL = [f"{i:09d}" for i in range(N)]


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_phantom_shards(tmp_path_factory.mktemp("ct") / "shards", N, SIDE, PER_SHARD, seed=11)


@pytest.fixture(scope="module")
def two_shards(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_phantom_shards(tmp_path_factory.mktemp("ct2") / "shards", 10, SIDE, 6, seed=12)


def collect(batches) -> tuple[list[str], list[str]]:  # type: ignore[no-untyped-def]
    """Keys read and keys skipped, in order."""
    keys: list[str] = []
    skipped: list[str] = []
    for b in batches:
        keys += b["key"]
        skipped += b["skipped"]
    return keys, skipped


def _copy(shards: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(shards, tmp_path / "copy"))


def test_stream_follows_the_indexed_loaders_shard_order(shards: Path) -> None:
    stream = StreamingShards(shards, 4, seed=5, epoch=1, label="label")
    batches = list(stream.loader())
    indexed = collect(IndexedShards(shards).loader(4, seed=5, epoch=1, shuffle="shard"))[0]
    assert collect(batches)[0] == indexed
    assert batches[0]["x"].dtype == torch.float32 and batches[0]["x"].shape == (4, SIDE, SIDE, SIDE)
    assert batches[0]["y"].dtype == torch.int64
    assert len(stream) == len(batches) == 6


def test_two_ranks_two_workers_with_fewer_shards_than_readers(two_shards: Path) -> None:
    # 2 shards for 2 ranks x 2 workers: samples are dealt by index, so nobody starves or hangs
    seen: list[str] = []
    for rank in (0, 1):
        ds = StreamingShards(two_shards, 2, seed=3, rank=rank, world_size=2, policy="uneven")
        seen += collect(ds.loader(num_workers=2, timeout=60))[0]
    assert sorted(seen) == [f"{i:09d}" for i in range(10)]


@pytest.mark.filterwarnings("ignore:This DataLoader will create")
def test_order_is_the_same_with_0_1_and_3_workers(shards: Path) -> None:
    ds = StreamingShards(shards, 3, seed=8, rank=0, world_size=2)
    orders = [collect(ds.loader(num_workers=k))[0] for k in (0, 1, 3)]
    assert orders[0] == orders[1] == orders[2] and len(orders[0]) == 11
    ds.set_epoch(1)
    assert collect(ds.loader())[0] != orders[0]


def test_resume_mid_epoch_gives_the_remaining_samples(shards: Path) -> None:
    full = collect(StreamingShards(shards, 4, seed=6).loader(num_workers=2))[0]
    consumed: list[str] = []
    for batch in StreamingShards(shards, 4, seed=6).loader(num_workers=2):
        consumed += batch["key"]
        if len(consumed) == 12:
            break
    rest = collect(StreamingShards(shards, 4, seed=6, start=len(consumed)).loader(num_workers=2))[0]
    assert consumed + rest == full


def test_truncated_shard_is_skipped_and_counted(shards: Path, tmp_path: Path) -> None:
    damaged = _copy(shards, tmp_path)
    info = load_manifest(damaged)["shards"][1]
    path = damaged / info["name"]
    cut = info["samples"][2]["bin"][0] + 100  # in the middle of the third sample's data
    path.write_bytes(path.read_bytes()[:cut])
    lost = [e["key"] for e in info["samples"][2:]]
    keys, skipped = collect(StreamingShards(damaged, 4, seed=1, on_error="skip").loader(num_workers=2))
    assert sorted(skipped) == lost  # counted, and the loader went on to the other shards
    assert sorted(keys) == sorted(set(ALL) - set(lost))
    with pytest.raises(ShardError, match=rf"{info['name']}, sample {lost[0]}"):
        collect(StreamingShards(damaged, 4, seed=1, shuffle="none").loader())


def test_flipped_byte_raise_names_shard_and_key_skip_counts_one(shards: Path, tmp_path: Path) -> None:
    damaged = _copy(shards, tmp_path)
    info = load_manifest(damaged)["shards"][3]
    entry = info["samples"][1]
    path = damaged / info["name"]
    data = bytearray(path.read_bytes())
    data[entry["bin"][0] + 10] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ShardError, match=rf"{info['name']}, sample {entry['key']}: checksum mismatch"):
        collect(StreamingShards(damaged, 4).loader())
    keys, skipped = collect(StreamingShards(damaged, 4, on_error="skip").loader(num_workers=2))
    assert skipped == [entry["key"]]
    assert sorted(keys) == sorted(set(ALL) - {entry["key"]})


def test_damaged_tar_header_recovers_the_cut_off_samples(shards: Path, tmp_path: Path) -> None:
    # tarfile ends a stream silently at a bad header; the manifest knows what is missing
    damaged = _copy(shards, tmp_path)
    info = load_manifest(damaged)["shards"][0]
    path = damaged / info["name"]
    data = bytearray(path.read_bytes())
    data[info["samples"][1]["bin"][0] - 400] ^= 0xFF
    path.write_bytes(bytes(data))
    keys, skipped = collect(StreamingShards(damaged, 4, shuffle="none").loader())
    assert skipped == [] and keys == ALL


@pytest.mark.parametrize("output_dtype", ["float32", "float16"])
def test_worker_memory_is_reused_only_after_the_caller_dropped_every_view(
    shards: Path, output_dtype: str
) -> None:
    # workers write batches into shared memory they reuse once the main process has released it
    import os

    key = "x" if output_dtype == "float32" else "raw"
    ds = StreamingShards(shards, 2, shuffle="none", output_dtype=output_dtype)
    want = [b[key].clone() for b in ds.loader()]
    loader = ds.loader(num_workers=2, persistent_workers=True, pin_memory=False)
    segments = set()
    for _ in range(2):  # the second epoch runs on segments released during the first
        held, views = [], []
        for k, b in enumerate(loader):
            segments.add(os.fstat(b[key].untyped_storage()._share_fd_cpu_()[0]).st_ino)
            if k % 3 == 0:
                held.append((k, b))  # the whole batch
            elif k % 3 == 1:
                views.append((k, b[key][1:]))  # a view of it only
        assert all(torch.equal(b[key], want[k]) for k, b in held)
        assert all(torch.equal(v, want[k][1:]) for k, v in views)
        assert len(held) + len(views) == 8 and len(want) == 11
    assert len(segments) < 22  # dropped batches' memory came back: not one segment per batch
