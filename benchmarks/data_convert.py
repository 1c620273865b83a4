"""Conversion speed of ``ampkit convert`` side by side with webdataset and MDS, on the same data, in one run.

Generates ``--n`` float32 CT-like phantoms (``--shape``³, HU, non-integer) once as ``.npy`` files,
plus an integer-valued float32 copy of them for int16 (int16 stores integers only). Then, in
``--rounds`` interleaved rounds (a fresh output folder per run, removed afterwards), converts them:

* ampkit ``convert`` to fp16, bf16 (the non-integer data) and int16 (the integer copy), with 1 and
  2 workers; every shard is fsynced and hashed (sha256 per shard, XXH3 per sample);
* webdataset ``ShardWriter`` writing float32 ``.npy`` samples, and float16 ``.npy`` (numpy cast);
* MDS (``mosaicml-streaming`` ``MDSWriter``, one ``ndarray:float16`` column, numpy cast).

Every runner reads the same ``.npy`` files (page cache) and writes shards of about the same size.
"stored" is the bytes written over the float32 input. The figure is GB/s of float32 input per CPU-second (user + system time of this process and its
worker processes, ``resource.getrusage``), the median over rounds ("best": the least disturbed
round, for a shared machine); wall-clock GB/s too (median). Peers do
not fsync (``--fsync-peers``: they fsync every file they wrote, inside the timed window, as ampkit
does); the kernel's later write-back of their dirty pages is charged to no process. A peer that is
not installed is reported as such (``make bench`` installs the ``bench`` extra).

    python benchmarks/data_convert.py [--n 200] [--shape 96] [--rounds 3] [--json out.json] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ampkit.data.codec import CodecOptions
from ampkit.data.convert import ConvertOptions, convert
from ampkit.data.phantoms import make_phantom
from ampkit.data.sources import discover

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/scaling.py, however this is run
import scaling

FLAGS = ("sse4_2", "avx2", "f16c", "avx512f", "avx512_bf16", "avx512_fp16", "amx_bf16", "sha_ni")
"""CPU flags that matter here: casts (f16c, AVX-512 BF16/FP16), XXH3 (avx2, avx512f), sha256 (sha_ni)."""


def cpu() -> tuple[str, str]:
    """``(model, relevant flags present)`` from lscpu (or /proc/cpuinfo, or the platform)."""
    model, flags = platform.processor() or platform.machine(), ""
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        text = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("Model name", "model name") and not flags:
            model = value.strip()
        if key.strip() in ("Flags", "flags"):
            have = set(value.split())
            flags = " ".join(f for f in FLAGS if f in have)
    return model, flags or "(unknown)"


def write_inputs(root: Path, n: int, side: int) -> tuple[list[str], list[str]]:
    """``n`` non-integer float32 phantoms and their integer-valued float32 copies, as ``.npy``."""
    (root / "float").mkdir(parents=True)
    (root / "int").mkdir()
    floats, ints = [], []
    for i in range(n):
        vol, _ = make_phantom(i, shape=(side, side, side), integer=False)
        floats.append(str(root / "float" / f"vol-{i:05d}.npy"))
        ints.append(str(root / "int" / f"vol-{i:05d}.npy"))
        np.save(floats[-1], vol.astype(np.float32))
        np.save(ints[-1], np.round(vol).astype(np.float32))
    return floats, ints


def ampkit_runner(dtype: str, workers: int, per_shard: int) -> Callable[[list[str], Path], None]:
    def run(paths: list[str], out: Path) -> None:
        opts = ConvertOptions(
            out=out, codec=CodecOptions(dtype=dtype), samples_per_shard=per_shard, workers=workers
        )
        convert(discover(paths), opts)

    return run


def wds_runner(stored: Any, per_shard: int) -> Callable[[list[str], Path], None]:
    import webdataset as wds

    def run(paths: list[str], out: Path) -> None:
        out.mkdir()
        with wds.ShardWriter(str(out / "shard-%06d.tar"), maxcount=per_shard, verbose=0) as sink:
            for i, path in enumerate(paths):
                sink.write({"__key__": f"{i:09d}", "npy": np.load(path).astype(stored, copy=False)})

    return run


def import_mds_writer() -> tuple[Any, str]:
    """``(MDSWriter, note)``. ``streaming/__init__`` also imports its example datasets, and with them
    torchvision; where torchvision cannot load (a CUDA wheel beside a CPU torch), the writer module
    is imported with that ``__init__`` skipped (the writer itself needs no torchvision)."""
    try:
        from streaming import MDSWriter

        return MDSWriter, ""
    except ImportError:
        raise
    except Exception as err:  # torchvision's C++ ops failed to load
        import importlib.util
        import sys
        import types

        spec = importlib.util.find_spec("streaming")
        if spec is None or spec.submodule_search_locations is None:
            raise ImportError(str(err)) from None
        package = types.ModuleType("streaming")
        package.__path__ = list(spec.submodule_search_locations)
        sys.modules["streaming"] = package
        from streaming.base.format.mds.writer import MDSWriter

        why = str(err).splitlines()[-1][:80]
        return MDSWriter, f"streaming/__init__ skipped: importing it failed in torchvision ({why})"


def mds_runner(per_shard: int, sample_bytes: int) -> Callable[[list[str], Path], None]:
    MDSWriter, note = import_mds_writer()
    if note:
        print(f"MDS: {note}")

    def run(paths: list[str], out: Path) -> None:
        limit = per_shard * (sample_bytes // 2 + 4096)
        with MDSWriter(out=str(out), columns={"vol": "ndarray:float16"}, size_limit=limit) as sink:
            for path in paths:
                sink.write({"vol": np.load(path).astype(np.float16)})

    return run


def fsync_tree(out: Path) -> None:
    """fsync every file under ``out`` and the folders holding them (what ampkit does per shard)."""
    for path in [*sorted(out.rglob("*")), out]:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def measure(
    run: Callable[[list[str], Path], None], paths: list[str], out: Path, durable: bool = False
) -> tuple[float, float, int]:
    """``(CPU seconds of this process and its children, wall seconds, bytes written)`` of one conversion."""
    before = [resource.getrusage(w) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    start = time.perf_counter()
    run(paths, out)
    if durable:
        fsync_tree(out)
    wall = time.perf_counter() - start
    after = [resource.getrusage(w) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    cpu_s = sum(a.ru_utime + a.ru_stime - b.ru_utime - b.ru_stime for a, b in zip(after, before))
    stored = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    shutil.rmtree(out)
    return cpu_s, wall, stored


def runners(args: argparse.Namespace, sample_bytes: int) -> tuple[dict[str, Any], dict[str, str]]:
    """Name -> (runner, uses the integer copy) and name -> why a peer is missing."""
    table: dict[str, Any] = {}
    missing: dict[str, str] = {}
    for dtype in args.dtypes.split(","):
        for w in (int(x) for x in args.workers.split(",")):
            table[f"ampkit {dtype}, {w} worker{'s' if w > 1 else ''}"] = (
                ampkit_runner(dtype, w, args.samples_per_shard),
                dtype == "int16",
            )
    try:
        table["webdataset float32 .npy"] = (wds_runner(np.float32, args.samples_per_shard), False)
        table["webdataset float16 .npy"] = (wds_runner(np.float16, args.samples_per_shard), False)
    except ImportError as err:
        missing["webdataset"] = str(err)
    try:
        table["MDS fp16 (mosaicml-streaming)"] = (mds_runner(args.samples_per_shard, sample_bytes), False)
    except ImportError as err:
        missing["MDS (mosaicml-streaming)"] = str(err)
    return table, missing


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Parse arguments, run every converter over the rounds, print the table; returns the figures."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=200, help="volumes (default 200: 708 MB at 96^3)")
    parser.add_argument("--shape", type=int, default=96, help="side of each cubic volume (default 96)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; the median is shown")
    parser.add_argument("--samples-per-shard", type=int, default=10, help="samples per shard, every writer")
    parser.add_argument("--dtypes", default="fp16,bf16,int16", help="ampkit dtypes")
    parser.add_argument("--workers", default="1,2", help="ampkit worker counts")
    parser.add_argument("--fsync-peers", action="store_true", help="peers fsync their files too")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    parser.add_argument("--quick", action="store_true", help="smoke run: 4 volumes of 24^3, one round")
    args = parser.parse_args(argv)
    if args.quick:
        args.n, args.shape, args.rounds, args.samples_per_shard = 4, 24, 1, 2
    model, flags = cpu()
    load = " ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    gb = args.n * args.shape**3 * 4 / 1e9
    print(f"machine: {model}, {os.cpu_count()} logical cores, {platform.system()} {platform.release()}")
    print(f"cpu flags: {flags}")
    print(f"input: {args.n} float32 CT phantoms of {args.shape}^3 ({gb * 1e3:.1f} MB), {args.rounds} rounds")
    print(f"load average before: {load}")
    print(
        "ampkit fsyncs every shard; peers " + ("fsync every file too" if args.fsync_peers else "do not fsync")
    )
    table, missing = runners(args, args.shape**3 * 4)
    for name, why in missing.items():
        print(f"{name}: not installed, not measured ({why}); `make bench` installs the bench extra")
    times: dict[str, list[tuple[float, float, int]]] = {name: [] for name in table}
    with tempfile.TemporaryDirectory(prefix="ampkit-bench-") as tmp:
        floats, ints = write_inputs(Path(tmp) / "src", args.n, args.shape)
        for r in range(args.rounds):
            for name, (run, integer) in table.items():
                durable = args.fsync_peers and not name.startswith("ampkit")
                times[name].append(measure(run, ints if integer else floats, Path(tmp) / f"out-{r}", durable))
    load = " ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    rows = {}
    for name, got in times.items():
        cpu_s, wall = statistics.median(g[0] for g in got), statistics.median(g[1] for g in got)
        rows[name] = {"gb_per_cpu_s": gb / cpu_s, "gb_per_s_wall": gb / wall, "cpu_s": cpu_s, "wall_s": wall}
        rows[name]["stored_vs_float32"] = got[-1][2] / (gb * 1e9)
        rows[name]["best_gb_per_cpu_s"] = gb / min(g[0] for g in got)  # least disturbed round
    base = rows.get("webdataset float32 .npy", {}).get("gb_per_cpu_s")
    print(
        f"{'converter':34s} {'GB/s/CPU-s':>10s} {'vs wds f32':>10s} {'best':>6s} {'GB/s wall':>9s} "
        f"{'CPU s':>7s} {'wall s':>7s} {'stored':>7s}"
    )
    for name, row in rows.items():
        ratio = f"{row['gb_per_cpu_s'] / base:9.2f}x" if base else "       n/a"
        print(
            f"{name:34s} {row['gb_per_cpu_s']:10.3f} {ratio} {row['best_gb_per_cpu_s']:6.3f} "
            f"{row['gb_per_s_wall']:9.3f} "
            f"{row['cpu_s']:7.2f} {row['wall_s']:7.2f} {row['stored_vs_float32']:7.4f}"
        )
    for dtype in args.dtypes.split(","):
        one, two = rows.get(f"ampkit {dtype}, 1 worker"), rows.get(f"ampkit {dtype}, 2 workers")
        if one and two:
            print(
                f"ampkit {dtype}: 2 workers {two['gb_per_s_wall'] / one['gb_per_s_wall']:.2f}x one worker (wall)"
            )
    ceiling = scaling.ceilings(1, work=0.05) if args.quick else scaling.ceilings(max(args.rounds, 3))
    print(f"ceiling for 2 workers ({scaling.line(ceiling)}; benchmarks/scaling.py)")
    print(f"load average after: {load}")
    result = {"machine": model, "flags": flags, "gb_float32": gb, "rounds": args.rounds, "rows": rows}
    result["peers_fsync"] = args.fsync_peers
    result["missing"] = missing
    result["two_process_ceiling"] = ceiling
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
