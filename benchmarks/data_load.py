"""Loading throughput: ampkit's loaders vs webdataset, MDS and litdata on the same data, side by side.

The same ``--n`` CT-like phantoms (float32 HU, ``--side``^3, non-integer) are stored by every
reader's own writer: ampkit fp16 shards (``convert``), webdataset tar shards of float32 and of
float16 ``.npy`` members (``TarWriter``), MDS (``mosaicml-streaming``'s ``MDSWriter``, an fp16
``ndarray`` column, no compression) and litdata (``litdata.optimize``, fp16 arrays, a local
folder). Each reader then delivers float32 batches of ``--batch`` volumes:

* 0 DataLoader workers, and 2 persistent workers (ampkit also with 2-byte output: the workers
  hand over float16 batches and the main process widens them, as the GPU would);
* 100 random samples by index (readers with random access: ampkit ``IndexedShards``, MDS, litdata).

Peers decode the way their documentation shows, with the cheapest widening (stack the float16
arrays of a batch, widen once). ampkit checks every sample's XXH3 (its default); the peers
check nothing (their defaults). The figure is **GB/s of float32 delivered per CPU-second**: float32
bytes / CPU time of the benchmark process and all its worker processes, so it measures work, not
how idle the machine is; wall-clock GB/s is printed beside it. Rounds are interleaved (every
reader once per round, after one warm-up round, files in the page cache) and the median is kept.
Peers come from the ``bench`` extra (``pip install -c constraints.txt -e ".[bench]"``); one that
is missing or fails to import is named in the output and left out, never estimated.

    python benchmarks/data_load.py [--quick] [--n 200] [--side 96] [--batch 8] [--rounds 5] [--json F]
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import multiprocessing
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import types
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from ampkit.data.codec import CodecOptions
from ampkit.data.convert import ConvertOptions, convert
from ampkit.data.loader_indexed import IndexedShards
from ampkit.data.loader_stream import StreamingShards
from ampkit.data.phantoms import make_phantom
from ampkit.data.preprocess import PreprocessConfig, finish_batch
from ampkit.data.sources import discover

# MDS and litdata hand out read-only arrays; the peers' collate only reads them (also in spawned workers)
warnings.filterwarnings("ignore", message="The given NumPy array is not writable")

Reader = Callable[[], Iterable[torch.Tensor]]
"""One epoch: an iterable of float32 batches."""


# --- machine and CPU accounting ----------------------------------------------------------


def machine() -> dict[str, str]:
    """CPU model and flags (``lscpu``), core count, torch version, load average."""
    info = {"cpus": str(os.cpu_count()), "torch": torch.__version__, "python": sys.version.split()[0]}
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        out = ""
    for line in out.splitlines():
        name, _, value = line.partition(":")
        if name.strip() in ("Model name", "Flags"):
            info[name.strip().lower().replace(" ", "_")] = value.strip()
    return info


def load_average() -> str:
    """The 1/5/15-minute load averages."""
    return "/".join(f"{v:.2f}" for v in os.getloadavg())


def _descendants_cpu() -> float:
    """CPU seconds of the live descendants of this process (DataLoader workers, helpers), from /proc.

    Each process's threads' ``schedstat`` (nanoseconds; ``stat``'s 10 ms ticks are too coarse for
    epochs of a few tenths of a second) is summed.
    """
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            parents[int(entry)] = int(stat[stat.rfind(")") + 2 :].split()[1])
    mine, changed = {os.getpid()}, True
    while changed:
        found = {pid for pid, ppid in parents.items() if ppid in mine} - mine
        mine |= found
        changed = bool(found)
    total = 0.0
    for pid in mine - {os.getpid()}:
        try:
            for task in os.listdir(f"/proc/{pid}/task"):
                total += int(Path(f"/proc/{pid}/task/{task}/schedstat").read_text().split()[0]) / 1e9
        except (OSError, ValueError, IndexError):
            continue
    return total


def cpu_seconds() -> float:
    """CPU time of this process, its finished children and its live descendants."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    done = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + done.ru_utime + done.ru_stime + _descendants_cpu()


def measure(read: Reader) -> tuple[float, float, int]:
    """``(CPU seconds, wall seconds, float32 bytes)`` of one epoch."""
    c0, t0 = cpu_seconds(), time.perf_counter()
    nbytes = 0
    for x in read():
        assert x.dtype == torch.float32
        nbytes += x.numel() * 4
    return cpu_seconds() - c0, time.perf_counter() - t0, nbytes


# --- peers -------------------------------------------------------------------------------


def import_mds() -> tuple[Any, str]:
    """``streaming.base`` (MDS), and a note when its package ``__init__`` had to be bypassed.

    ``import streaming`` also imports ``streaming.vision``, which needs torchvision; where no
    torchvision build matches the installed torch, the reader and writer (``streaming.base``,
    which does not use torchvision) are imported without the package ``__init__``.
    """
    try:
        return importlib.import_module("streaming.base"), ""
    except Exception as err:
        first = f"{type(err).__name__}: {err}".splitlines()[0][:120]
    for name in [m for m in sys.modules if m == "streaming" or m.startswith("streaming.")]:
        del sys.modules[name]
    spec = importlib.util.find_spec("streaming")
    if spec is None or spec.submodule_search_locations is None:
        raise ImportError(first)
    shell = types.ModuleType("streaming")
    shell.__path__ = list(spec.submodule_search_locations)
    shell.__spec__ = spec
    sys.modules["streaming"] = shell
    return importlib.import_module(
        "streaming.base"
    ), f"imported streaming.base without streaming/__init__ ({first})"


def import_peers() -> tuple[dict[str, Any], list[str]]:
    """The peer modules that import here (``mds``: ``streaming.base``, ``litdata``) and notes on the rest."""
    peers: dict[str, Any] = {}
    notes: list[str] = []
    try:
        peers["mds"], note = import_mds()
        if note:
            notes.append(f"MDS: {note}")
    except Exception as err:
        notes.append(f"MDS (mosaicml-streaming) left out: cannot import it ({type(err).__name__}: {err})")
    try:
        peers["litdata"] = importlib.import_module("litdata")
    except Exception as err:
        notes.append(f"litdata left out: cannot import it ({type(err).__name__}: {err})")
    return peers, notes


# at import, so that spawned DataLoader workers (MDS's) unpickle its classes the same way
PEERS, PEER_NOTES = import_peers()


def stack16(items: list[dict[str, Any]]) -> torch.Tensor:
    """A peer's collate: stack the float16 arrays of a batch, widen once to float32."""
    return torch.stack([torch.from_numpy(np.asarray(i["x"])) for i in items]).float()


def _stack_npy(items: list[np.ndarray]) -> torch.Tensor:
    return torch.stack([torch.from_numpy(a) for a in items]).float()


def _first(sample: tuple[Any, ...]) -> Any:
    return sample[0]


# --- data --------------------------------------------------------------------------------


def make_data(root: Path, n: int, side: int, per_shard: int, peers: dict[str, Any]) -> dict[str, Any]:
    """Write the same volumes with every writer; returns where each copy lives."""
    import webdataset as wds

    src = root / "src"
    src.mkdir(parents=True)
    vols = [make_phantom(i, shape=(side, side, side), integer=False)[0] for i in range(n)]
    for i, v in enumerate(vols):
        np.save(src / f"vol-{i:05d}.npy", v)
    out: dict[str, Any] = {"ampkit": root / "ampkit"}
    convert(
        discover([str(src)]),
        ConvertOptions(out=out["ampkit"], codec=CodecOptions(dtype="fp16"), samples_per_shard=per_shard),
    )
    for kind, dtype in (("wds32", np.float32), ("wds16", np.float16)):
        urls = []
        for s in range(0, n, per_shard):
            urls.append(str(root / f"{kind}-{s // per_shard:06d}.tar"))
            with wds.TarWriter(urls[-1]) as w:
                for i in range(s, min(n, s + per_shard)):
                    w.write({"__key__": f"{i:09d}", "npy": vols[i].astype(dtype)})
        out[kind] = urls
    shard_bytes = per_shard * side**3 * 2
    if "mds" in peers:
        out["mds"] = str(root / "mds")
        column = {"x": f"ndarray:float16:{side},{side},{side}"}
        with peers["mds"].MDSWriter(out=out["mds"], columns=column, size_limit=shard_bytes + (1 << 20)) as w:
            for v in vols:
                w.write({"x": v.astype(np.float16)})
    if "litdata" in peers:
        out["litdata"] = str(root / "litdata")
        inputs = [str(p) for p in sorted(src.glob("*.npy"))]  # its workers load the sources themselves
        method = multiprocessing.get_start_method(allow_none=True)  # optimize() forces "spawn" globally
        peers["litdata"].optimize(
            fn=_lit_sample, inputs=inputs, output_dir=out["litdata"],
            chunk_bytes=shard_bytes + (1 << 20), num_workers=1, mode="overwrite",
        )  # fmt: skip
        multiprocessing.set_start_method(method, force=True)
    shutil.rmtree(src)
    return out


def _lit_sample(path: str) -> dict[str, np.ndarray]:
    return {"x": np.load(path).astype(np.float16)}


def _quiet(fn: Callable[[], Any]) -> Any:
    """Run ``fn`` with stdout/stderr sent to /dev/null (litdata prints progress bars)."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 1)
        os.dup2(null, 2)
        return fn()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, null):
            os.close(fd)


# --- readers -----------------------------------------------------------------------------

TWO_BYTE = PreprocessConfig()
"""Preprocessing of the 2-byte batches (none: decoding only), applied after the hand-over."""


def readers(data: dict[str, Any], peers: dict[str, Any], batch: int, workers: int) -> dict[str, Reader]:
    """One epoch per call for every reader, with ``workers`` persistent DataLoader workers."""
    import webdataset as wds

    extra: dict[str, Any] = {"persistent_workers": True} if workers else {}

    def keep(loader: Iterable[Any], pick: Callable[[Any], torch.Tensor]) -> Reader:
        return lambda: (pick(b) for b in loader)

    out: dict[str, Reader] = {}
    d = data["ampkit"]
    stream = StreamingShards(d, batch, shuffle="none").loader(num_workers=workers, **extra)
    out["ampkit StreamingShards"] = keep(stream, lambda b: b["x"])
    indexed = IndexedShards(d).loader(batch, shuffle="none", num_workers=workers, **extra)
    out["ampkit IndexedShards"] = keep(indexed, lambda b: b["x"])
    if workers:
        widen = lambda b: finish_batch(b, "cpu", TWO_BYTE)["x"]  # noqa: E731 (the device's widening)
        s16 = StreamingShards(d, batch, shuffle="none", output_dtype="float16")
        out["ampkit StreamingShards 2-byte"] = keep(s16.loader(num_workers=workers, **extra), widen)
        i16 = IndexedShards(d, output_dtype="float16").loader(
            batch, shuffle="none", num_workers=workers, **extra
        )
        out["ampkit IndexedShards 2-byte"] = keep(i16, widen)
    for kind, label in (("wds32", "webdataset .npy float32"), ("wds16", "webdataset .npy float16")):
        pipe = wds.WebDataset(data[kind], shardshuffle=False, empty_check=False).decode().to_tuple("npy")
        pipe = pipe.map(_first).batched(batch, collation_fn=_stack_npy)
        out[label] = keep(DataLoader(pipe, batch_size=None, num_workers=workers, **extra), lambda b: b)
    if "mds" in data:
        ds = peers["mds"].StreamingDataset(local=data["mds"], shuffle=False, batch_size=batch)
        # MDS locks are not fork-safe (filelock refuses an inherited lock): spawn its workers
        ctx = {"multiprocessing_context": "spawn"} if workers else {}
        mds = DataLoader(ds, batch_size=batch, num_workers=workers, collate_fn=stack16, **extra, **ctx)
        out["MDS fp16"] = keep(mds, lambda b: b)
    if "litdata" in data:
        ds = peers["litdata"].StreamingDataset(input_dir=data["litdata"])
        lit = DataLoader(ds, batch_size=batch, num_workers=workers, collate_fn=stack16, **extra)
        out["litdata fp16"] = keep(lit, lambda b: b)
    return out


def random_access(data: dict[str, Any], peers: dict[str, Any]) -> dict[str, Callable[[int], torch.Tensor]]:
    """Sample ``i`` as float32, by index, for every reader with random access."""
    out: dict[str, Callable[[int], torch.Tensor]] = {}
    ds, trusting = IndexedShards(data["ampkit"]), IndexedShards(data["ampkit"], verify="off")
    out["ampkit IndexedShards"] = lambda i: ds[i]["x"]
    out["ampkit IndexedShards verify=off"] = lambda i: trusting[i][
        "x"
    ]  # the checksum's share, for the record
    if "mds" in data:
        mds = peers["mds"].StreamingDataset(local=data["mds"], shuffle=False, batch_size=1)
        out["MDS fp16"] = lambda i: torch.from_numpy(mds[i]["x"]).float()
        # how issue 12's table decoded it (numpy widens float16 at ~3 GB/s): context, not the target
        out["MDS fp16, numpy .astype"] = lambda i: torch.from_numpy(mds[i]["x"].astype(np.float32))
    if "litdata" in data:
        lit = peers["litdata"].StreamingDataset(input_dir=data["litdata"])
        out["litdata fp16"] = lambda i: torch.from_numpy(lit[i]["x"]).float()
    return out


# --- the run -----------------------------------------------------------------------------


def run_section(name: str, make: dict[str, Reader], rounds: int) -> list[dict[str, Any]]:
    """Interleaved rounds (one warm-up) of every reader; one row per reader with medians."""
    cpu: dict[str, list[float]] = {k: [] for k in make}
    wall: dict[str, list[float]] = {k: [] for k in make}
    nbytes: dict[str, int] = {}
    for r in range(rounds + 1):
        for label, read in make.items():
            c, w, n = measure(read)
            nbytes[label] = n
            if r:
                cpu[label].append(n / c / 1e9)
                wall[label].append(n / w / 1e9)
    return [
        {"section": name, "reader": k, "gb_per_cpu_s": statistics.median(cpu[k]),
         "gb_per_s_wall": statistics.median(wall[k]), "gb_per_cpu_s_rounds": cpu[k], "bytes": nbytes[k]}
        for k in make
    ]  # fmt: skip


def run_random(access: dict[str, Callable[[int], torch.Tensor]], n: int, rounds: int) -> list[dict[str, Any]]:
    """ms per sample (wall and CPU) of 100 random indices, interleaved rounds, medians."""
    picks = np.random.default_rng(0).integers(0, n, 100).tolist()
    wall: dict[str, list[float]] = {k: [] for k in access}
    cpu: dict[str, list[float]] = {k: [] for k in access}
    for r in range(rounds + 1):
        for label, get in access.items():
            c0, t0 = cpu_seconds(), time.perf_counter()
            for i in picks:
                assert get(i).dtype == torch.float32
            if r:
                wall[label].append((time.perf_counter() - t0) * 1e3 / len(picks))
                cpu[label].append((cpu_seconds() - c0) * 1e3 / len(picks))
    return [
        {"section": "random access", "reader": k, "ms_per_sample": statistics.median(wall[k]),
         "cpu_ms_per_sample": statistics.median(cpu[k])}
        for k in access
    ]  # fmt: skip


def report(rows: list[dict[str, Any]]) -> list[str]:
    """Print each section's table with ratios against the best peer; returns the target lines."""
    lines = []
    for section in dict.fromkeys(r["section"] for r in rows):
        part = [r for r in rows if r["section"] == section]
        if section == "random access":
            peers = [r for r in part if not r["reader"].startswith("ampkit") and "numpy" not in r["reader"]]
            best = min(peers, key=lambda r: r["ms_per_sample"]) if peers else None
            print(f"\n{section}: 100 samples by index, ms per sample (median)")
            for r in part:
                vs = (
                    f"  {r['ms_per_sample'] / best['ms_per_sample']:.2f}x of {best['reader']}" if best else ""
                )
                print(
                    f"  {r['reader']:32s} {r['ms_per_sample']:7.3f} ms wall  {r['cpu_ms_per_sample']:7.3f} ms CPU{vs}"
                )
            if best:
                amp = part[0]
                ok = amp["ms_per_sample"] <= best["ms_per_sample"]
                lines.append(
                    f"random access: {amp['ms_per_sample']:.3f} ms/sample, {best['reader']} "
                    f"{best['ms_per_sample']:.3f} (target <= best peer): {'met' if ok else 'NOT met'}"
                )
            continue
        peers = [r for r in part if not r["reader"].startswith("ampkit")]
        best = max(peers, key=lambda r: r["gb_per_cpu_s"]) if peers else None
        print(f"\n{section}: GB/s of float32 per CPU-second (median; wall GB/s beside)")
        for r in part:
            vs = f"  {r['gb_per_cpu_s'] / best['gb_per_cpu_s']:.2f}x best peer" if best else ""
            print(f"  {r['reader']:32s} {r['gb_per_cpu_s']:7.3f}  (wall {r['gb_per_s_wall']:6.3f}){vs}")
        if best:
            print(f"  best peer: {best['reader']}")
        by = {r["reader"]: r for r in part}
        lit = by.get("litdata fp16")
        for name in ("ampkit StreamingShards", "ampkit IndexedShards"):
            r = by[name] if section.startswith("0 workers") else by.get(f"{name} 2-byte")
            if r is None:
                continue
            if section.startswith("0 workers"):
                ok = r["gb_per_cpu_s"] >= 2.0 and (
                    lit is None or r["gb_per_cpu_s"] >= 1.2 * lit["gb_per_cpu_s"]
                )
                vs = (
                    f", {r['gb_per_cpu_s'] / lit['gb_per_cpu_s']:.2f}x litdata"
                    if lit
                    else ", litdata missing"
                )
                lines.append(
                    f"{name}, 0 workers: {r['gb_per_cpu_s']:.2f} GB/s per CPU-s{vs} (target >= 2.0 and >= 1.2x): {'met' if ok else 'NOT met'}"
                )
            elif best:
                ratio = r["gb_per_cpu_s"] / best["gb_per_cpu_s"]
                lines.append(
                    f"{r['reader']}, 2 workers: {ratio:.2f}x best peer (target >= 1.5x): {'met' if ratio >= 1.5 else 'NOT met'}"
                )
    return lines


def main() -> None:
    """Write the data with every writer, read it back with every reader, print the figures."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=200, help="volumes")
    ap.add_argument("--side", type=int, default=96, help="edge of each cubic volume")
    ap.add_argument("--batch", type=int, default=8, help="volumes per batch")
    ap.add_argument("--per-shard", type=int, default=25, help="volumes per shard (all formats)")
    ap.add_argument("--rounds", type=int, default=5, help="timed rounds per section (median kept)")
    ap.add_argument("--workers", type=int, default=2, help="DataLoader workers of the second section")
    ap.add_argument("--quick", action="store_true", help="48 volumes of 64^3, 3 rounds")
    ap.add_argument("--json", help="also write the figures to this file")
    args = ap.parse_args()
    if args.quick:
        args.n, args.side, args.rounds = 48, 64, 3
    torch.set_num_threads(1)  # one core per process for every reader: the figure is per CPU-second
    info = machine()
    print(
        f"machine: {info.get('model_name', '?')}, {info['cpus']} logical CPUs, torch {info['torch']}, Python {info['python']}"
    )
    print(f"flags: {info.get('flags', '?')}")
    print(f"load average at start: {load_average()}")
    peers: dict[str, Any] = {}
    notes: list[str] = []
    peers, notes = PEERS, PEER_NOTES
    for note in notes:
        print(note)
    gb = args.n * args.side**3 * 4 / 1e9
    print(
        f"data: {args.n} float32 volumes of {args.side}^3 ({gb:.3f} GB), batches of {args.batch}, {args.per_shard} per shard"
    )
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        data = _quiet(lambda: make_data(Path(tmp), args.n, args.side, args.per_shard, peers))
        sizes = {k: _size(v) for k, v in data.items()}
        print("on disk (MB): " + ", ".join(f"{k} {v / 1e6:.1f}" for k, v in sizes.items()))
        rows += run_section("0 workers", _quiet(lambda: readers(data, peers, args.batch, 0)), args.rounds)
        print(f"load average after 0 workers: {load_average()}")
        section = f"{args.workers} workers"
        rows += _quiet(
            lambda: run_section(section, readers(data, peers, args.batch, args.workers), args.rounds)
        )
        print(f"load average after {section}: {load_average()}")
        rows += _quiet(lambda: run_random(random_access(data, peers), args.n, args.rounds))
        print(f"load average at end: {load_average()}")
    targets = report(rows)
    print("\ntargets (issue 12):")
    for line in targets:
        print(f"  {line}")
    if args.json:
        Path(args.json).write_text(
            json.dumps({"machine": info, "notes": notes, "sizes": sizes, "rows": rows}, indent=1)
        )


def _size(where: Any) -> int:
    paths = [Path(u) for u in where] if isinstance(where, list) else list(Path(where).rglob("*"))
    return sum(p.stat().st_size for p in paths if p.is_file())


if __name__ == "__main__":
    main()
