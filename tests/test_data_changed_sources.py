"""Sources that change between runs or during one: a rerun rewrites the shards whose sources changed
(M3), and a source swapped mid-run for a FIFO or a lying header fails at once, named (L8)."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ampkit.cli import main
from ampkit.data.codec import CodecOptions, SampleError
from ampkit.data.convert import ConvertOptions, convert
from ampkit.data.format import decode_array, load_manifest, read_sample, shard_paths
from ampkit.data.outlock import LOCK_NAME
from ampkit.data.resume import SETTINGS_NAME
from ampkit.data.shardwriter import ShardWriter
from ampkit.data.sources import discover


def _sources(src: Path, base: float) -> None:
    src.mkdir(exist_ok=True)
    for i in range(4):
        np.save(src / f"s{i}.npy", np.full(16, base + i, np.float32))


def _run(src: Path, out: Path) -> Any:
    opts = ConvertOptions(out=out, codec=CodecOptions(), samples_per_shard=2)
    return convert(discover([str(src)]), opts)


def _values(out: Path) -> list[float]:
    """The first decoded value of every sample, in key order (what a loader serves)."""
    found = []
    for shard in load_manifest(out)["shards"]:
        for entry in shard["samples"]:
            bin_bytes, meta = read_sample(out / shard["name"], entry)
            found.append(float(decode_array(bin_bytes, meta).reshape(-1)[0]))
    return found


def _new_values(src: Path) -> None:  # s2 rewritten: same path, same shape, other values
    np.save(src / "s2.npy", np.full(16, 100.25, np.float32))


def _sidecar(src: Path) -> None:  # a sidecar appears beside s0: its slope goes into the sample JSON
    (src / "s0.json").write_text('{"slope": 2.0}')


def _touched(src: Path) -> None:  # same bytes, a newer mtime: rewritten (the stamp cannot know), same result
    later = time.time_ns() + 5_000_000_000
    os.utime(src / "s3.npy", ns=(later, later))


def _earlier_version(src: Path) -> None:  # .convert.json of a version that recorded no source stamps
    settings = src.parent / "out" / SETTINGS_NAME
    data = json.loads(settings.read_text())
    del data["sources"]
    settings.write_text(json.dumps(data))


def _nothing(src: Path) -> None:
    pass


@pytest.mark.parametrize(
    ("change", "rewritten", "kept"),
    [
        (_new_values, 1, 1),
        (_sidecar, 1, 1),
        (_touched, 1, 1),
        (_earlier_version, 2, 0),
        (_nothing, 0, 2),
    ],
    ids=["values-changed", "sidecar-added", "mtime-changed", "no-stamps-recorded", "unchanged"],
)
def test_a_rerun_rewrites_exactly_the_shards_whose_sources_changed(
    tmp_path: Path, change: Callable[[Path], None], rewritten: int, kept: int
) -> None:
    src, out = tmp_path / "src", tmp_path / "out"
    _sources(src, 1.5)
    _run(src, out)
    settings_before = (out / SETTINGS_NAME).read_bytes()
    change(src)
    result = _run(src, out)
    assert (result.shards_replaced, result.shards_written, result.shards_skipped) == (
        rewritten,
        rewritten,
        kept,
    )
    fresh = _run(src, tmp_path / "fresh")  # what the sources hold now, converted from scratch
    assert load_manifest(out) == load_manifest(tmp_path / "fresh") == fresh.manifest
    assert [p.read_bytes() for p in shard_paths(out)] == [
        p.read_bytes() for p in shard_paths(tmp_path / "fresh")
    ]
    assert _values(out) == [float(np.load(src / f"s{i}.npy")[0]) for i in range(4)]  # exact in float16
    assert not (out / LOCK_NAME).exists()
    if change is _nothing:  # a rerun with nothing changed rewrites nothing, .convert.json included
        assert (out / SETTINGS_NAME).read_bytes() == settings_before


def test_the_cli_summary_says_which_shards_were_rewritten(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src, out = tmp_path / "src", tmp_path / "out"
    _sources(src, 1.5)
    argv = ["convert", str(src), "--out", str(out), "--samples-per-shard", "2", "--quiet"]
    assert main(argv) == 0
    _new_values(src)
    capsys.readouterr()
    assert main(argv) == 0
    assert (
        "(wrote 1 (1 rewritten: their sources changed), kept 1 from an earlier run" in capsys.readouterr().out
    )
    assert _values(out)[2] == 100.25


def test_a_stale_shard_left_by_an_interrupted_rerun_is_not_trusted_later(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The rerun records no stamp for a stale shard until it is rewritten: interrupted before that,
    the next run still rewrites it."""
    src, out = tmp_path / "src", tmp_path / "out"
    _sources(src, 1.5)
    _run(src, out)
    _new_values(src)  # shard 1 stale
    (out / "shard-000000.tar").unlink()  # shard 0 to write first
    original = ShardWriter.add

    def interrupted(self: ShardWriter, *args: Any) -> None:
        if self.name == "shard-000001.tar":
            raise KeyboardInterrupt
        original(self, *args)

    monkeypatch.setattr(ShardWriter, "add", interrupted)
    with pytest.raises(KeyboardInterrupt):
        _run(src, out)
    monkeypatch.setattr(ShardWriter, "add", original)
    assert json.loads((out / SETTINGS_NAME).read_text())["sources"][1] is None
    assert not (out / LOCK_NAME).exists()
    result = _run(src, out)
    assert (result.shards_replaced, result.shards_skipped) == (1, 1)
    assert _values(out) == [1.5, 2.5, 100.25, 4.5]


def _swap_fifo(path: Path) -> None:
    path.unlink()
    os.mkfifo(path)


def _swap_huge_header(path: Path) -> None:
    with open(path, "wb") as fh:  # a header promising 2**40 float32 values, then 16 bytes
        np.lib.format.write_array_header_1_0(fh, {"descr": "<f4", "fortran_order": False, "shape": (2**40,)})
        fh.write(b"\0" * 16)


@pytest.mark.parametrize(
    ("swap", "error", "needle"),
    [
        (_swap_fifo, OSError, "not a regular file"),
        (_swap_huge_header, SampleError, "the header promises 4398046511104 data bytes, the file holds 16"),
    ],
    ids=["fifo", "header-promising-4-tb"],
)
def test_a_source_swapped_after_discovery_fails_at_once_without_reading_or_allocating(
    tmp_path: Path, swap: Callable[[Path], None], error: type[Exception], needle: str
) -> None:
    src = tmp_path / "src"
    _sources(src, 1.5)
    sources = discover([str(src)])
    swap(src / "s3.npy")
    started = time.monotonic()
    with pytest.raises(error, match=needle):
        convert(sources, ConvertOptions(out=tmp_path / "out", codec=CodecOptions(), samples_per_shard=2))
    assert time.monotonic() - started < 30  # a blocking open of the FIFO would never return
    assert not (tmp_path / "out" / LOCK_NAME).exists()
