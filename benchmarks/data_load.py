"""Loading throughput: fp16 shards through ampkit's loaders vs float32 ``.npy`` through webdataset.

The same ``--n`` CT-like phantoms (HU, ``--side``^3, non-integer) are stored twice: as ampkit
fp16 shards (``convert``) and as float32 ``.npy`` members in webdataset tar shards (``TarWriter``)
read with webdataset's standard decoder (``WebDataset(...).decode()``). Each reader delivers
float32 batches of ``--batch`` volumes through a ``DataLoader`` with 1 and 2 workers (ampkit
also applies ``slope``/``intercept`` in float32, which the ``.npy`` path does not need); the
"2-byte" row has the workers pass float16 batches and widens them after the hand-over. The
figure is decoded float32 GB/s per worker: float32 bytes delivered / wall time / workers, the
median of ``--repeat`` epochs after one warm-up round, the readers taking turns (files in the page cache, so this
measures decoding, not the disk). The machine is named; on a shared machine figures are noisy.

    python benchmarks/data_load.py [--n 192] [--side 64] [--batch 8] [--workers 1,2] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Iterable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
import webdataset as wds
from torch.utils.data import DataLoader

from ampkit.data.codec import CodecOptions
from ampkit.data.convert import ConvertOptions, convert
from ampkit.data.loader_indexed import IndexedShards
from ampkit.data.loader_stream import StreamingShards
from ampkit.data.phantoms import make_phantom
from ampkit.data.preprocess import PreprocessConfig, finish_batch
from ampkit.data.sources import discover
from ampkit.hardware import device_capabilities

TWO_BYTE = PreprocessConfig(on="device")
"""Workers hand over the stored 2-byte batch; it is widened to float32 after the hand-over
(here in the main process on the CPU, where a GPU run would do it on the GPU)."""


def make_data(root: Path, n: int, side: int, per_shard: int) -> tuple[Path, list[str]]:
    """fp16 ampkit shards and float32 ``.npy`` webdataset shards of the same volumes."""
    src = root / "src"
    src.mkdir(parents=True)
    npy_urls = []
    writer = None
    for i in range(n):
        vol, _ = make_phantom(i, shape=(side, side, side), integer=False)
        np.save(src / f"vol-{i:05d}.npy", vol)
        if i % per_shard == 0:
            if writer is not None:
                writer.close()
            npy_urls.append(str(root / f"npy-{i // per_shard:06d}.tar"))
            writer = wds.TarWriter(npy_urls[-1])
        assert writer is not None
        writer.write({"__key__": f"{i:09d}", "npy": vol})
    if writer is not None:
        writer.close()
    opts = ConvertOptions(out=root / "fp16", codec=CodecOptions(dtype="fp16"), samples_per_shard=per_shard)
    convert(discover([str(src)]), opts)
    return root / "fp16", npy_urls


def npy_loader(urls: list[str], batch: int, workers: int) -> DataLoader:
    """webdataset's standard path: tar -> ``.decode()`` (``.npy`` via numpy) -> float32 batches."""
    pipeline = (
        wds.WebDataset(urls, shardshuffle=False, empty_check=False)
        .decode()
        .to_tuple("npy")
        .map(lambda t: torch.from_numpy(t[0]))
        .batched(batch, collation_fn=torch.stack)
    )
    return DataLoader(pipeline, batch_size=None, num_workers=workers)


def float32_x(batch: dict[str, Any]) -> torch.Tensor:
    """The float32 volumes of an ampkit batch."""
    return batch["x"]  # type: ignore[no-any-return]


def epoch(make: Callable[[], Iterable], batches_of: Callable[[Any], torch.Tensor]) -> tuple[float, int]:
    """Seconds of one epoch (worker start-up included) and the float32 bytes it delivered."""
    start = time.perf_counter()
    nbytes = sum(batches_of(b).numel() * 4 for b in make())
    return time.perf_counter() - start, nbytes


def main() -> None:
    """Run the comparison and print (and optionally save) the figures."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=192, help="volumes")
    ap.add_argument("--side", type=int, default=64, help="edge of each cubic volume")
    ap.add_argument("--batch", type=int, default=8, help="volumes per batch")
    ap.add_argument("--per-shard", type=int, default=8, help="volumes per shard")
    ap.add_argument("--workers", default="1,2", help="DataLoader worker counts, comma-separated")
    ap.add_argument("--repeat", type=int, default=5, help="timed epochs per reader (median kept)")
    ap.add_argument("--json", help="also write the figures to this file")
    args = ap.parse_args()
    torch.set_num_threads(1)  # one thread per worker process: the figure is per worker
    machine = f"{device_capabilities('cpu').name}, {os.cpu_count()} logical CPUs, torch {torch.__version__}"
    print(f"machine: {machine}")
    print(f"data: {args.n} volumes of {args.side}^3 float32 HU, batches of {args.batch}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        fp16_dir, npy_urls = make_data(Path(tmp), args.n, args.side, args.per_shard)
        readers = {
            "ampkit stream fp16": lambda k: StreamingShards(fp16_dir, args.batch, shuffle="none").loader(
                num_workers=k
            ),
            "ampkit indexed fp16": lambda k: IndexedShards(fp16_dir).loader(
                args.batch, shuffle="none", num_workers=k
            ),
            "ampkit stream fp16 2-byte": lambda k: StreamingShards(
                fp16_dir, args.batch, shuffle="none", preprocess=TWO_BYTE
            ).loader(num_workers=k),
            "webdataset .npy float32": lambda k: npy_loader(npy_urls, args.batch, k),
        }
        pick = {
            "webdataset .npy float32": lambda b: b,
            "ampkit stream fp16 2-byte": lambda b: finish_batch(b, "cpu", TWO_BYTE)["x"],
        }
        for workers in (int(w) for w in args.workers.split(",")):
            times: dict[str, list[float]] = {name: [] for name in readers}
            nbytes = 0
            for r in range(args.repeat + 1):  # readers take turns, so load spikes hit them alike
                for name, make in readers.items():
                    seconds, nbytes = epoch(partial(make, workers), pick.get(name, float32_x))
                    if r:  # the first round warms the page cache and the imports
                        times[name].append(seconds)
            rates = {n: nbytes / statistics.median(t) / 1e9 / max(1, workers) for n, t in times.items()}
            for name, rate in rates.items():
                spread = f"{min(times[name]):.2f}-{max(times[name]):.2f} s/epoch"
                rows.append(
                    {"reader": name, "workers": workers, "gb_per_s_per_worker": rate, "s": times[name]}
                )
                print(f"{name:26s} workers={workers}  {rate:6.3f} GB/s per worker  ({spread})")
            ratio = rates["ampkit stream fp16"] / rates["webdataset .npy float32"]
            two = rates["ampkit stream fp16 2-byte"] / rates["webdataset .npy float32"]
            print(
                f"  ratio vs float32 .npy at {workers} worker(s): fp16 stream {ratio:.2f}x, 2-byte {two:.2f}x"
            )
        sizes = {
            "fp16 shards MB": sum(p.stat().st_size for p in fp16_dir.glob("shard-*.tar")) / 1e6,
            "npy shards MB": sum(Path(u).stat().st_size for u in npy_urls) / 1e6,
        }
        print(f"on disk: fp16 {sizes['fp16 shards MB']:.1f} MB, float32 .npy {sizes['npy shards MB']:.1f} MB")
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": machine, "rows": rows, **sizes}, indent=1))


if __name__ == "__main__":
    main()
