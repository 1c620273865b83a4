"""convert: round trips, reproducible shards, plain-tar/webdataset readability, kill -9 resume, bad input."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ampkit.cli import main
from ampkit.data import format as fmt
from ampkit.data.codec import CodecOptions
from ampkit.data.convert import DELAY_ENV, ConvertOptions, convert, plan_shards
from ampkit.data.format import decode_array, load_manifest, read_sample, rebuild_manifest, shard_paths
from ampkit.data.phantoms import write_phantom_dataset
from ampkit.data.sourceread import load
from ampkit.data.sources import discover
from ampkit.errors import UsageError

REPO = Path(__file__).resolve().parents[1]


def _convert(srcs: list[str], out: Path, **codec: object) -> dict:  # type: ignore[type-arg]
    opts = ConvertOptions(out=out, codec=CodecOptions(**codec), samples_per_shard=2)  # type: ignore[arg-type]
    return convert(discover(srcs), opts).manifest


def _samples(out: Path) -> dict[str, tuple[np.ndarray, dict]]:  # type: ignore[type-arg]
    got = {}
    for shard in load_manifest(out)["shards"]:
        for entry in shard["samples"]:
            bin_bytes, meta = read_sample(out / shard["name"], entry)
            got[entry["key"]] = (decode_array(bin_bytes, meta), meta)
    return got


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("phantoms")
    write_phantom_dataset(root / "int", 4, seed=0, shape=(16, 16, 16), integer=True)
    write_phantom_dataset(root / "float", 4, seed=10, shape=(16, 16, 16), integer=False)
    return {"int": root / "int", "float": root / "float"}


@pytest.mark.parametrize(("dtype", "offset"), [("int16", None), ("fp16", "auto")])
def test_integer_hu_round_trip_exact(
    phantoms: dict[str, Path], tmp_path: Path, dtype: str, offset: str
) -> None:
    manifest = _convert([str(phantoms["int"])], tmp_path, dtype=dtype, offset=offset)
    assert manifest["worst_error"]["max_abs"] == 0.0
    for key, (values, meta) in _samples(tmp_path).items():
        src = np.load(meta["source"])["volume"]
        np.testing.assert_array_equal(values, src.astype(np.float32), err_msg=key)
        assert meta["source_dtype"] == "int16" and meta["error"] == {"max_abs": 0.0, "max_rel": 0.0}


def test_float_hu_fp16_without_offset_meets_half_spacing(tmp_path: Path) -> None:
    x = np.random.default_rng(3).uniform(-1024, 3071, size=(20, 20, 20))
    np.save(tmp_path / "vol.v1.npy", x)  # a dotted name: the key stays dot-free, the path goes in the JSON
    _convert([str(tmp_path / "vol.v1.npy")], tmp_path / "out", dtype="fp16")
    ((key, (values, meta)),) = _samples(tmp_path / "out").items()
    assert key == "000000000" and meta["source"].endswith("vol.v1.npy") and meta["offset"] == 0.0
    err = np.abs(values.astype(np.float64) - x)
    for lo, hi, bound in ((512, 1024, 0.25), (1024, 2048, 0.5), (2048, 4096, 1.0)):
        band = (np.abs(x) >= lo) & (np.abs(x) < hi)
        assert err[band].max() <= bound
    assert meta["error"]["max_abs"] == err.max()
    assert meta["error"]["max_rel"] == (err[x != 0] / np.abs(x[x != 0])).max()
    assert meta["range"] == [x.min(), x.max()]


def test_metadata_from_npz_scalars_and_sidecar(phantoms: dict[str, Path], tmp_path: Path) -> None:
    _convert([str(phantoms["float"])], tmp_path)
    _, meta = _samples(tmp_path)["000000001"]
    assert meta["array_key"] == "volume" and meta["slope"] == 1.0 and meta["intercept"] == 0.0
    assert meta["meta"]["label"] == 11 % 4 and meta["meta"]["uid"].count(".") > 3
    assert meta["choice"]["dtype"] == meta["dtype"] == "float16" and meta["choice"]["reason"]


def test_same_inputs_give_byte_identical_shards(phantoms: dict[str, Path], tmp_path: Path) -> None:
    srcs = [str(phantoms["int"]), str(phantoms["float"])]
    first = _convert(srcs, tmp_path / "a")
    opts = ConvertOptions(out=tmp_path / "b", codec=CodecOptions(), samples_per_shard=2, workers=2)
    second = convert(discover(srcs), opts).manifest  # parallel workers: same bytes
    assert [s["sha256"] for s in first["shards"]] == [s["sha256"] for s in second["shards"]]
    assert len(first["shards"]) == 4
    for a, b in zip(shard_paths(tmp_path / "a"), shard_paths(tmp_path / "b")):
        assert a.read_bytes() == b.read_bytes()


def test_storage_ratio_reported_by_summary(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rng = np.random.default_rng(0)
    for i in range(4):
        np.save(tmp_path / f"f32-{i}.npy", rng.normal(size=(64, 64, 64)).astype(np.float32))
        np.save(tmp_path / f"f64-{i}.npy", rng.normal(size=(64, 64, 64)))
    f32 = sorted(str(p) for p in tmp_path.glob("f32-*.npy"))
    f64 = sorted(str(p) for p in tmp_path.glob("f64-*.npy"))
    assert main(["convert", *f32, "--out", str(tmp_path / "o32"), "--dtype", "fp16", "--quiet"]) == 0
    assert main(["convert", *f64, "--out", str(tmp_path / "o64"), "--dtype", "bf16", "--quiet"]) == 0
    out = capsys.readouterr().out
    ratios = [float(r) for r in re.findall(r"ratio ([0-9.]+) of float32", out)]
    sources = [float(r) for r in re.findall(r"([0-9.]+) of the source dtype", out)]
    assert ratios[0] <= 0.51 and sources[1] <= 0.26, out
    assert load_manifest(tmp_path / "o64")["storage_ratio_vs_source"] == pytest.approx(sources[1], abs=1e-4)


_PLAIN_READER = """
import glob, json, sys, tarfile
import numpy as np, webdataset as wds
shards = sorted(glob.glob(sys.argv[1] + "/shard-*.tar"))
plain = {}
for s in shards:
    with tarfile.open(s) as tf:
        for m in tf.getmembers():
            if m.name.endswith(".json"):
                meta = json.loads(tf.extractfile(m).read())
                raw = tf.extractfile(meta["key"] + ".bin").read()
                plain[meta["key"]] = float(np.frombuffer(raw, meta["dtype"]).astype(np.float64).sum() + meta["offset"] * np.prod(meta["shape"]))
via_wds = {}
for sample in wds.WebDataset(shards, shardshuffle=False):
    assert set(sample) - {"__key__", "__url__", "__local_path__"} == {"bin", "json"}, sorted(sample)
    meta = json.loads(sample["json"])
    via_wds[sample["__key__"]] = float(np.frombuffer(sample["bin"], meta["dtype"]).astype(np.float64).sum() + meta["offset"] * np.prod(meta["shape"]))
assert not any(m.startswith("ampkit") for m in sys.modules), "ampkit was imported"
print(json.dumps({"plain": plain, "wds": via_wds}))
"""


def test_shards_open_with_tarfile_and_webdataset_without_ampkit(
    phantoms: dict[str, Path], tmp_path: Path
) -> None:
    _convert([str(phantoms["int"]), str(phantoms["float"])], tmp_path, dtype="fp16", offset="auto")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run(
        [sys.executable, "-c", _PLAIN_READER, str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        check=True,
    )
    got = json.loads(proc.stdout)
    expected = {k: float(v.astype(np.float64).sum()) for k, (v, _) in _samples(tmp_path).items()}
    assert got["plain"] == got["wds"] and sorted(got["wds"]) == sorted(expected) and len(expected) == 8
    for key, total in expected.items():
        assert got["wds"][key] == pytest.approx(total, rel=1e-6)  # decode adds the offset in float32


def test_kill_9_then_rerun_equals_uninterrupted(tmp_path: Path) -> None:
    src = tmp_path / "src"
    write_phantom_dataset(src, 12, seed=5, shape=(16, 16, 16), integer=False)
    reference = _convert([str(src)], tmp_path / "ref")  # samples_per_shard=2: 6 shards
    out = tmp_path / "out"
    cmd = [
        sys.executable,
        "-m",
        "ampkit",
        "convert",
        str(src),
        "--out",
        str(out),
        "--samples-per-shard",
        "2",
        "--quiet",
    ]
    proc = subprocess.Popen(
        cmd,
        env={**os.environ, DELAY_ENV: "0.15"},
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60

    def mid_run() -> bool:  # one shard complete and the next one begun
        return (out / "shard-000000.tar").exists() and any(out.glob(".shard-*.tar.tmp"))

    while not mid_run() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    complete = shard_paths(out)
    assert 1 <= len(complete) < 6 and not (out / "manifest.json").exists()
    assert list(out.glob(".shard-*.tar.tmp")), "the kill should leave an unfinished shard behind"
    rerun = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, check=True)
    assert f"kept {len(complete)} from an earlier run, removed 1 unfinished" in rerun.stdout
    assert load_manifest(out) == reference and not list(out.glob(".*.tmp"))
    assert main(["verify-shards", str(out), "--quiet"]) == 0


def test_bad_input_is_one_line_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    np.savez(tmp_path / "a.npz", image=np.zeros((2, 2), np.float32))
    assert main(["convert", str(tmp_path / "missing.npz"), "--out", str(tmp_path / "o")]) == 2
    assert (
        main(["convert", str(tmp_path / "a.npz"), "--array-key", "volume", "--out", str(tmp_path / "o")]) == 2
    )
    with pytest.raises(SystemExit) as exit_info:
        main(["convert", str(tmp_path / "a.npz"), "--dtype", "fp8", "--out", str(tmp_path / "o")])
    assert exit_info.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert (
        len(lines) == 3
        and "no such file" in lines[0]
        and lines[1].endswith("a.npz has no array 'volume'; arrays: image")
    )
    assert "invalid choice: 'fp8'" in lines[2]


def test_rerun_into_a_folder_of_another_conversion_is_refused(
    phantoms: dict[str, Path], tmp_path: Path
) -> None:
    _convert([str(phantoms["int"])], tmp_path)
    with pytest.raises(Exception, match="different conversion"):
        _convert([str(phantoms["float"])], tmp_path)


def test_shard_bounds(tmp_path: Path) -> None:
    for i in range(5):
        np.save(tmp_path / f"v{i}.npy", np.zeros((32, 32), np.float32))  # 2 KiB stored each
    sources = discover([str(tmp_path)])
    assert plan_shards(sources, shard_size=1 << 30, samples_per_shard=2) == [[0, 1], [2, 3], [4]]
    assert plan_shards(sources, shard_size=12_000, samples_per_shard=100) == [[0, 1], [2, 3], [4]]
    assert plan_shards(sources, shard_size=100, samples_per_shard=100) == [[0], [1], [2], [3], [4]]
    with pytest.raises(UsageError):
        plan_shards(sources, shard_size=0, samples_per_shard=1)


def test_overflow_on_the_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    np.save(tmp_path / "big.npy", np.array([1.0, 1e5, -2e5], np.float32))
    args = ["convert", str(tmp_path / "big.npy"), "--dtype", "fp16", "--quiet"]
    assert main([*args, "--out", str(tmp_path / "a")]) == 2
    assert "sample 000000000 (" in capsys.readouterr().err
    assert main([*args, "--out", str(tmp_path / "b"), "--on-overflow", "clip"]) == 0
    assert "values clipped: 2" in capsys.readouterr().out
    assert load_manifest(tmp_path / "b")["overflow_clipped"] == 2


def test_resume_with_other_settings_is_refused(phantoms: dict[str, Path], tmp_path: Path) -> None:
    _convert([str(phantoms["int"])], tmp_path, dtype="int16")
    with pytest.raises(UsageError, match=r"other settings \(dtype\)"):
        _convert([str(phantoms["int"])], tmp_path, dtype="fp16")
    _convert([str(phantoms["int"])], tmp_path, dtype="int16")  # the same settings resume (nothing to do)


# --- speed-related guarantees: no read-back hashing, parallel modes byte-identical, fast loading ---


def test_manifest_hashes_come_from_the_writer_not_a_reread(
    phantoms: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def reread(path: Path) -> str:
        raise AssertionError(f"{path} was read back to hash it")

    monkeypatch.setattr(fmt, "file_sha256", reread)
    manifest = _convert([str(phantoms["float"])], tmp_path)
    monkeypatch.undo()
    assert manifest == rebuild_manifest(tmp_path, write=False)  # equals the manifest from the files alone
    for shard in manifest["shards"]:
        assert shard["sha256"] == hashlib.sha256((tmp_path / shard["name"]).read_bytes()).hexdigest()


@pytest.mark.parametrize(("per_shard", "shards"), [(8, 1), (3, 3)], ids=["samples-mode", "shards-mode"])
def test_two_workers_write_the_bytes_of_one(
    phantoms: dict[str, Path], tmp_path: Path, per_shard: int, shards: int
) -> None:
    """Fewer shards than workers: workers encode, one process writes; else each worker writes shards."""
    srcs = discover([str(phantoms["int"]), str(phantoms["float"])])
    got = {}
    for workers in (1, 2):
        opts = ConvertOptions(
            out=tmp_path / str(workers), codec=CodecOptions(), samples_per_shard=per_shard, workers=workers
        )
        got[workers] = convert(srcs, opts).manifest
    assert got[1] == got[2] and len(got[1]["shards"]) == shards
    assert [p.read_bytes() for p in shard_paths(tmp_path / "1")] == [
        p.read_bytes() for p in shard_paths(tmp_path / "2")
    ]


def test_a_refusal_in_one_worker_undoes_every_workers_shards(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for i in range(8):
        np.save(src / f"v{i}.npy", np.full((16, 16), float(i), np.float32))
    np.save(src / "v6.npy", np.array([[1.0, np.nan]], np.float32))  # in the last of 4 shards
    opts = ConvertOptions(out=tmp_path / "out", codec=CodecOptions(), samples_per_shard=2, workers=2)
    with pytest.raises(UsageError, match=r"v6\.npy.*1 NaN/Inf values"):
        convert(discover([str(src)]), opts)
    assert not (tmp_path / "out").exists()  # shards other workers completed meanwhile are removed too


@pytest.mark.parametrize(
    "make",
    [
        lambda: np.arange(60, dtype=">f4").reshape(3, 4, 5),
        lambda: np.asfortranarray(np.arange(60, dtype=np.int16).reshape(3, 4, 5)),
        lambda: np.arange(7, dtype=np.uint8),
    ],
    ids=["big-endian", "fortran-order", "uint8"],
)
@pytest.mark.parametrize("container", ["npy", "npz", "npz-compressed"])
def test_fast_reader_equals_numpy_load(tmp_path: Path, make: Any, container: str) -> None:
    array = make()
    path = tmp_path / f"a.{container[:3]}"
    if container == "npy":
        np.save(path, array)
    else:
        (np.savez_compressed if container == "npz-compressed" else np.savez)(
            path, vol=array, slope=np.float32(2)
        )
    got, slope, _, _ = load(discover([str(path)])[0])
    expected = np.load(path) if container == "npy" else np.load(path)["vol"]
    assert got.dtype == expected.dtype and got.shape == expected.shape and np.array_equal(got, expected)
    assert slope == (1.0 if container == "npy" else 2.0)


def test_truncated_after_discovery_is_refused_naming_the_sample(tmp_path: Path) -> None:
    np.save(tmp_path / "a.npy", np.zeros(1000, np.float32))
    sources = discover([str(tmp_path / "a.npy")])
    with open(tmp_path / "a.npy", "r+b") as fh:
        fh.truncate(2000)
    with pytest.raises(UsageError, match=r"sample 000000000 .*cannot be read \(truncated: "):
        convert(sources, ConvertOptions(out=tmp_path / "out"))
    assert not (tmp_path / "out").exists()


def test_benchmark_quick_run_measures_every_converter(capsys: pytest.CaptureFixture[str]) -> None:
    spec = importlib.util.spec_from_file_location("bench_convert", REPO / "benchmarks" / "data_convert.py")
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    result = bench.main(["--quick"])
    out = capsys.readouterr().out
    names = [
        f"ampkit {d}, {w} worker{'s' if w > 1 else ''}" for d in ("fp16", "bf16", "int16") for w in (1, 2)
    ]
    names += ["webdataset float32 .npy", "webdataset float16 .npy"]
    for name in names:
        row = result["rows"][name]
        assert row["gb_per_cpu_s"] > 0 and row["wall_s"] > 0 and name in out
    assert "cpu flags:" in out and "load average before:" in out
    assert set(result["two_process_ceiling"]) == {"sha256", "copy", "cast"}
    assert all(r > 0 for r in result["two_process_ceiling"].values()) and "ceiling for 2 workers" in out
    assert ("MDS fp16 (mosaicml-streaming)" in result["rows"]) != (
        "MDS (mosaicml-streaming)" in result["missing"]
    )


def test_ctrl_c_with_workers_keeps_complete_shards_and_leaves_no_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = tmp_path / "src"
    write_phantom_dataset(src, 12, seed=3, shape=(8, 8, 8), integer=False)
    reference = _convert([str(src)], tmp_path / "ref")  # 2 per shard: 6 shards
    monkeypatch.setenv(DELAY_ENV, "0.15")
    fired: list[threading.Timer] = []

    def interrupt_soon(_nbytes: int) -> None:  # once the workers are writing: Ctrl-C to this process
        if not fired:
            fired.append(threading.Timer(0.4, os.kill, (os.getpid(), signal.SIGINT)))
            fired[0].start()

    opts = ConvertOptions(out=tmp_path / "out", codec=CodecOptions(), samples_per_shard=2, workers=2)
    with pytest.raises(KeyboardInterrupt):
        convert(discover([str(src)]), opts, on_sample=interrupt_soon)
    fired[0].join()
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert not [n for n in names if n.endswith(".tmp")]  # each worker removed its unfinished shard
    assert 1 <= len(shard_paths(tmp_path / "out")) < 6 and "manifest.json" not in names
    monkeypatch.delenv(DELAY_ENV)
    assert _convert([str(src)], tmp_path / "out") == reference  # the kept shards resume to the same result


@pytest.mark.parametrize(
    ("arrays", "counts"),
    [
        ([np.full(16, np.nan, np.float32)], [16]),  # all NaN: "max abs error 0" alone would hide it (M8)
        ([np.array([np.inf, -np.inf, 1.25, 100.5], np.float32), np.ones(4, np.float32)], [2, 0]),
        ([np.ones(4, np.float32)], [0]),  # clean data: no field, the bytes of earlier versions
    ],
    ids=["all-nan", "inf-and-clean", "clean"],
)
def test_kept_nonfinite_values_are_counted_per_sample_and_in_the_manifest(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], arrays: list[np.ndarray], counts: list[int]
) -> None:
    (tmp_path / "src").mkdir()
    for i, a in enumerate(arrays):
        np.save(tmp_path / "src" / f"s{i}.npy", a)
    out = tmp_path / "out"
    assert (
        main(["convert", str(tmp_path / "src"), "--out", str(out), "--on-nonfinite", "keep", "--quiet"]) == 0
    )
    metas = [meta for _, meta in _samples(out).values()]
    assert [m.get("nonfinite", 0) for m in metas] == counts
    assert all(("nonfinite" in m) == (n > 0) for m, n in zip(metas, counts))
    manifest = load_manifest(out)
    assert manifest["nonfinite"] == sum(counts) and rebuild_manifest(out, write=False) == manifest
    kept = f"NaN/Inf kept: {sum(counts)}"
    assert (kept in capsys.readouterr().out) == (sum(counts) > 0)
    assert main(["verify-shards", str(out), "--quiet"]) == 0
    capsys.readouterr()
    assert main(["inspect", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["nonfinite"] == sum(counts)
