"""Conversion throughput and storage ratio of ``ampkit convert`` on synthetic CT volumes.

Writes ``--n`` non-integer float32 phantoms (HU, ``--shape``) to a temporary folder, then times
``convert`` into fp16 shards with each worker count in ``--workers`` (a fresh output folder per
run, two runs each, the faster kept). Throughput is MB/s of float32 input (total, and per worker);
the storage ratio is whole shard files (tar headers and JSON included) over the float32 bytes,
and over float64 for the same data saved as float64. The machine is named (CPU model, cores).
Timings on a shared machine are noisy: run it when the machine is idle, and more than once.

    python benchmarks/data_convert.py [--n 16] [--shape 96] [--workers 1,2] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
from pathlib import Path

import numpy as np

from ampkit.data.codec import CodecOptions
from ampkit.data.convert import ConvertOptions, convert
from ampkit.data.phantoms import make_phantom
from ampkit.data.sources import discover
from ampkit.hardware import device_capabilities


def write_inputs(root: Path, n: int, side: int, dtype: type) -> list[str]:
    """``n`` phantoms as ``.npy`` in ``dtype``; returns their paths."""
    root.mkdir(parents=True)
    paths = []
    for i in range(n):
        vol, _ = make_phantom(i, shape=(side, side, side), integer=False)
        path = root / f"vol-{i:04d}.npy"
        np.save(path, vol.astype(dtype))
        paths.append(str(path))
    return paths


def run(paths: list[str], out: Path, workers: int) -> dict[str, float]:
    """One conversion into fp16; throughput and ratios."""
    opts = ConvertOptions(out=out, codec=CodecOptions(dtype="fp16"), samples_per_shard=4, workers=workers)
    result = convert(discover(paths), opts)
    mbps = result.float32_bytes_read / result.seconds / 1e6
    m = result.manifest
    return {
        "workers": workers,
        "seconds": result.seconds,
        "mb_per_s": mbps,
        "mb_per_s_per_worker": mbps / workers,
        "ratio_vs_float32": m["storage_ratio_vs_float32"],
        "ratio_vs_source": m["storage_ratio_vs_source"],
        "worst_max_abs": m["worst_error"]["max_abs"],
    }


def main() -> None:
    """Parse arguments, run, print."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=16, help="volumes")
    parser.add_argument("--shape", type=int, default=96, help="side of each cubic volume")
    parser.add_argument("--workers", default="1,2", help="comma-separated worker counts")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()
    machine = f"{device_capabilities('cpu').name}, {os.cpu_count()} logical cores, {platform.system()} {platform.release()}"
    print(f"machine: {machine}")
    mb = args.n * args.shape**3 * 4 / 1e6
    print(f"input: {args.n} float32 phantoms of {args.shape}^3 ({mb:.1f} MB as float32), stored as fp16")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        f32 = write_inputs(Path(tmp) / "f32", args.n, args.shape, np.float32)
        f64 = write_inputs(Path(tmp) / "f64", args.n, args.shape, np.float64)
        for workers in (int(w) for w in args.workers.split(",")):
            tries = [run(f32, Path(tmp) / f"out-{workers}-{k}", workers) for k in range(2)]
            rows.append(max(tries, key=lambda r: r["mb_per_s"]))
            r = rows[-1]
            print(
                f"workers {workers}: {r['mb_per_s']:7.1f} MB/s total, {r['mb_per_s_per_worker']:7.1f} MB/s per "
                f"worker ({r['seconds']:.2f} s); ratio {r['ratio_vs_float32']:.4f} of float32; worst max abs "
                f"error {r['worst_max_abs']:g} HU"
            )
        r64 = run(f64, Path(tmp) / "out-f64", 1)
        print(f"float64 source: ratio {r64['ratio_vs_source']:.4f} of float64")
    if args.json:
        args.json.write_text(json.dumps({"machine": machine, "runs": rows, "float64": r64}, indent=1))


if __name__ == "__main__":
    main()
