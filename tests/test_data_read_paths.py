"""The reader's two ways to a sample: ``pread`` or a mapped file.

Every way gives the same batch, names a flipped byte by shard and key, drops a damaged row under
``skip``, and a shard cut short while mapped is named, never a SIGBUS (mirrors
``ampkit.data.shardfiles`` and ``ampkit.data.batchread``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from ampkit.data.format import load_manifest
from ampkit.data.loader_indexed import IndexedShards
from ampkit.data.samples import ShardError
from ampkit.data.shardfiles import MAP_BYTES, ShardFiles
from ampkit.errors import UsageError
from ampkit.tasks.ct import make_phantom_shards

N, SIDE, PER_SHARD = 12, 16, 4
PATHS = {"pread": 0, "mapped": MAP_BYTES}


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_phantom_shards(tmp_path_factory.mktemp("paths") / "shards", N, SIDE, PER_SHARD, seed=3)


@pytest.fixture(params=list(PATHS))
def path(request: pytest.FixtureRequest) -> dict[str, int]:
    return {"map_bytes": PATHS[request.param]}


def _flip(directory: Path, key: str, member: str = "bin") -> str:
    for shard in load_manifest(directory)["shards"]:
        for entry in shard["samples"]:
            if entry["key"] == key:
                path = directory / shard["name"]
                data = bytearray(path.read_bytes())
                data[entry[member][0] + 5] ^= 0x40
                path.write_bytes(bytes(data))
                return str(shard["name"])
    raise KeyError(key)


def test_every_read_path_gives_the_batch_of_plain_pread(shards: Path, path: dict[str, int]) -> None:
    want = IndexedShards(shards, map_bytes=0, verify="off").get_batch([0, 5, 6, 11, 2])
    ds = IndexedShards(shards, map_bytes=path["map_bytes"])
    for _ in range(2):  # the second time from the kept files and mappings
        got = ds.get_batch([0, 5, 6, 11, 2])
        assert torch.equal(got["x"], want["x"]) and got["key"] == want["key"]
        for row, i in enumerate([0, 5, 6, 11, 2]):  # one sample at a time
            one = ds[i]
            assert torch.equal(one["x"][0], want["x"][row]) and one["key"] == [want["key"][row]]
    assert (ds.reader._files.view(0) is not None) == (path["map_bytes"] > 0)


def test_every_read_path_names_a_flipped_byte(shards: Path, tmp_path: Path, path: dict[str, int]) -> None:
    damaged = Path(shutil.copytree(shards, tmp_path / "d"))
    shard = _flip(damaged, "000000006")
    for read in ([6], [5, 6, 7]):  # alone and in a batch
        with pytest.raises(ShardError, match=rf"{shard}, sample 000000006: checksum mismatch: xxh3"):
            IndexedShards(damaged, map_bytes=path["map_bytes"]).get_batch(read)
        with pytest.raises(ShardError, match=rf"{shard}, sample 000000006: checksum mismatch: xxh3"):
            IndexedShards(damaged, map_bytes=path["map_bytes"], output_dtype="float16").get_batch(read)
    ds = IndexedShards(damaged, on_error="skip", map_bytes=path["map_bytes"])
    got = ds.get_batch([5, 6, 7])
    want = IndexedShards(shards, map_bytes=0).get_batch([5, 7])
    assert got["key"] == ["000000005", "000000007"] and got["skipped"] == ["000000006"]
    assert torch.equal(got["x"], want["x"]) and ds.skipped == 1
    alone = ds[6]
    assert alone["key"] == [] and alone["skipped"] == ["000000006"] and alone["x"].numel() == 0
    assert torch.equal(ds[7]["x"][0], want["x"][1]) and ds.skipped == 2


def test_damaged_json_is_reported_by_its_checksum_on_every_path(
    shards: Path, tmp_path: Path, path: dict[str, int]
) -> None:
    damaged = Path(shutil.copytree(shards, tmp_path / "d"))
    _flip(damaged, "000000009", member="json")
    for read in ([9], [8, 9]):
        with pytest.raises(ShardError, match=r"sample 000000009: checksum mismatch: xxh3"):
            IndexedShards(damaged, map_bytes=path["map_bytes"]).get_batch(read)


def test_a_shard_cut_short_while_mapped_names_the_lost_samples(shards: Path, tmp_path: Path) -> None:
    """In a child process: a SIGBUS there fails this test instead of killing the test run."""
    damaged = Path(shutil.copytree(shards, tmp_path / "d"))
    last = load_manifest(damaged)["shards"][-1]
    cut = last["samples"][2]["bin"][0] + 10  # inside sample 10's data
    script = f"""
import os, sys
from ampkit.data.loader_indexed import IndexedShards
from ampkit.data.samples import ShardError
ds = IndexedShards({str(damaged)!r})
assert ds.get_batch([10, 11])["key"] == ["000000010", "000000011"]
assert ds.reader._files.view({len(load_manifest(damaged)["shards"]) - 1}) is not None
os.truncate({str(damaged / last["name"])!r}, {cut})
assert ds.get_batch([8, 9])["key"] == ["000000008", "000000009"]
try:
    ds.get_batch([9, 10])
except ShardError as err:
    print(err)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"{last['name']}, sample 000000010: bin" in done.stdout and "truncated?" in done.stdout


def test_mapped_bytes_stay_within_map_bytes(tmp_path: Path) -> None:
    paths = []
    for i, size in enumerate([3000, 5000, 4000]):
        paths.append(tmp_path / f"f{i}")
        paths[-1].write_bytes(bytes([i + 1]) * size)
    files = ShardFiles(map_bytes=9000)
    views = []
    for i in range(3):
        files.get(i, lambda s: paths[s])
        views.append(files.view(i))
        assert views[-1] is not None and views[-1][0] == i + 1 and files._mapped <= 9000
    assert files._open[0].view is None and files._open[2].view is not None  # the oldest went first
    assert int(views[0][-1]) == 1  # a view handed out earlier stays readable after its file is unmapped
    small = ShardFiles(map_bytes=100)
    small.get(0, lambda s: paths[s])
    assert small.view(0) is None  # larger than the whole allowance: read with pread
    files.close()
    assert files._mapped == 0 and not files._open


def test_an_empty_file_is_read_without_a_mapping(tmp_path: Path) -> None:
    (tmp_path / "empty").write_bytes(b"")
    files = ShardFiles(map_bytes=1 << 20)
    assert files.get(0, lambda s: tmp_path / "empty") == (files._open[0].fd, 0)
    assert files.view(0) is None


def test_map_bytes_takes_numpy_integers(shards: Path) -> None:
    ds = IndexedShards(shards, map_bytes=np.int64(1 << 20))
    assert ds.reader._files.map_bytes == 1 << 20 and type(ds.reader._files.map_bytes) is int


@pytest.mark.parametrize("bad", [-1, True, 1.5, "4G", None, np.int64(-1), np.float64(4.0)])
def test_map_bytes_refuses_what_is_not_a_byte_count(shards: Path, bad: object) -> None:
    with pytest.raises(UsageError, match=r"map_bytes=.*valid: an int >= 0"):
        IndexedShards(shards, map_bytes=bad)  # type: ignore[arg-type]


def _manifest_edit(directory: Path, edit) -> None:  # type: ignore[no-untyped-def]
    import json

    manifest = json.loads((directory / "manifest.json").read_text())
    for shard in manifest["shards"]:
        for entry in shard["samples"]:
            edit(entry)
    (directory / "manifest.json").write_text(json.dumps(manifest))


@pytest.mark.parametrize("map_bytes", [0, MAP_BYTES])
def test_a_null_checksum_is_no_checksum_and_the_shard_hash_decides(
    shards: Path, tmp_path: Path, map_bytes: int
) -> None:
    damaged = Path(shutil.copytree(shards, tmp_path / "d"))
    _manifest_edit(damaged, lambda e: e.update(xxh3=None))
    shard = _flip(damaged, "000000006")
    with pytest.raises(ShardError, match=rf"{shard}, sample 0000000\d\d: shard sha256 mismatch; no checksum"):
        IndexedShards(damaged, map_bytes=map_bytes)[6]


def test_an_interrupted_shard_hash_is_done_again(
    shards: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ampkit.data import batchread

    damaged = Path(shutil.copytree(shards, tmp_path / "d"))
    _manifest_edit(damaged, lambda e: e.pop("xxh3"))  # only the shard's sha256 can tell
    _flip(damaged, "000000006")
    real, calls = batchread.file_sha256, []

    def interrupted_once(path: Path) -> str:
        calls.append(path)
        if len(calls) == 1:
            raise KeyboardInterrupt
        return real(path)

    monkeypatch.setattr(batchread, "file_sha256", interrupted_once)
    ds = IndexedShards(damaged)
    with pytest.raises(KeyboardInterrupt):
        ds[6]
    with pytest.raises(ShardError, match="shard sha256 mismatch"):
        ds[6]
    assert len(calls) == 2


@pytest.mark.parametrize("map_bytes", [0, MAP_BYTES])
def test_threads_sharing_one_dataset_get_their_own_samples(shards: Path, map_bytes: int) -> None:
    from concurrent.futures import ThreadPoolExecutor

    want = IndexedShards(shards, map_bytes=0).get_batch(list(range(N)))["x"].clone()
    ds = IndexedShards(shards, map_bytes=map_bytes)

    def read(k: int) -> bool:
        i = (k * 7) % N
        batch = ds.get_batch([i, (i + 5) % N]) if k % 2 else ds[i]
        return all(torch.equal(row, want[int(j)]) for row, j in zip(batch["x"], batch["index"], strict=True))

    with ThreadPoolExecutor(4) as pool:
        assert all(pool.map(read, range(400)))


def test_a_fifo_in_a_shards_place_is_a_named_damage_not_a_hang(shards: Path, tmp_path: Path) -> None:
    import signal

    damaged = Path(shutil.copytree(shards, tmp_path / "d"))
    name = load_manifest(damaged)["shards"][1]["name"]
    (damaged / name).unlink()
    os.mkfifo(damaged / name)

    def hung(*_: object) -> None:
        raise TimeoutError("the reader waited on the FIFO")

    old = signal.signal(signal.SIGALRM, hung)
    signal.alarm(20)
    try:
        with pytest.raises(
            ShardError, match=rf"{name}, sample 000000004: cannot open shard \(not a regular file"
        ):
            IndexedShards(damaged)[4]
        got = IndexedShards(damaged, on_error="skip").get_batch([3, 4, 8])
        (damaged / name).unlink()
        (damaged / name).mkdir()  # a folder in its place: named too
        with pytest.raises(ShardError, match=rf"{name}, sample 000000004: cannot open shard \(is a folder\)"):
            IndexedShards(damaged)[4]
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    assert got["key"] == ["000000003", "000000008"] and got["skipped"] == ["000000004"]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_fork_while_another_thread_reads_leaves_the_child_free_to_read(shards: Path) -> None:
    """A DataLoader forks its workers from the main thread; another thread may be inside a read
    (holding the dataset's lock) at that moment: the child must not inherit the held lock."""
    import select

    ds = IndexedShards(shards)
    want = ds[3]["x"].clone()
    r, w = os.pipe()
    with ds.reader._lock:  # as if another thread were mid-read when the fork happened
        assert ds.reader._lock.held()
        pid = os.fork()
        if pid == 0:  # pragma: no cover (child)
            os.write(w, b"1" if torch.equal(ds[3]["x"], want) else b"0")
            os._exit(0)
    os.close(w)
    ready = select.select([r], [], [], 60)[0]
    if not ready:
        os.kill(pid, 9)
    os.waitpid(pid, 0)
    assert ready and os.read(r, 1) == b"1"


def test_a_closed_dataset_holds_no_mapping_of_its_files(shards: Path, tmp_path: Path) -> None:
    maps = Path(f"/proc/{os.getpid()}/maps")
    if not maps.exists():
        pytest.skip("no /proc")
    mine = Path(shutil.copytree(shards, tmp_path / "mine"))  # no other test's dataset maps these
    ds = IndexedShards(mine)
    ds[5]
    assert str(mine) in maps.read_text()  # mapped while open
    ds.close()
    assert str(mine) not in maps.read_text()
