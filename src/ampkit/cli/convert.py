"""``ampkit convert SRC... --out DIR``: store .npz/.npy arrays as 2-byte tar shards (fp16, bf16, int16).

Shards read with plain ``tarfile`` or ``webdataset``; per sample ``<key>.bin`` (raw little-endian
2-byte values) and ``<key>.json`` (shape, dtypes, offset, slope, intercept, source, range, error).
Reruns are byte-identical; a rerun after an interruption continues where it stopped.

Exit codes: 0 converted; 2 a bad flag, input file or output folder, or a sample that cannot be
stored as asked (NaN, overflow, tolerance): one line, and --out is left as it was found;
1 an environment fault (full disk, I/O error): one line, complete shards are kept and the same
command resumes. See docs/data.md.
"""

from __future__ import annotations

import argparse
import math
import re
import sys
from typing import Any

from ..errors import UsageError
from .checks import check_out_dir, check_positive
from .parser import add_flag, path_arg

_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
#: Smallest ``--shard-size``: a sample's tar headers and JSON alone take about 3.5 KiB.
MIN_SHARD_SIZE = 4 << 10
#: Largest finite float32; an ``--offset`` beyond it cannot be stored with the samples.
FLOAT32_MAX = 3.4028234663852886e38


def parse_size(text: str) -> int:
    """``"512M"``, ``"1G"``, ``"1.5GB"``, ``"4096"`` -> bytes."""
    valid = "valid: a number of bytes > 0 with optional K/M/G/T, e.g. 512M"
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([kmgt]?)i?b?\s*", text.lower())
    if not match:
        raise UsageError(f"bad --shard-size {text!r}; {valid}")
    size = int(float(match.group(1)) * _UNITS[match.group(2)])
    if size < 1:
        raise UsageError(f"--shard-size {text}: less than one byte; {valid}")
    if size < MIN_SHARD_SIZE:
        raise UsageError(
            f"--shard-size {text}: {size} bytes, less than one sample's tar headers and metadata; "
            "valid: at least 4K, e.g. 512M"
        )
    return size


def parse_offset(text: str | None) -> float | str | None:
    """``--offset``: None, ``"auto"`` or a number."""
    if text is None or text == "auto":
        return text
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise UsageError(f"bad --offset {text!r}; valid: a finite number or auto")
    if abs(value) > FLOAT32_MAX:
        raise UsageError(
            f"--offset {text}: beyond float32's range, where offsets are stored; "
            f"valid: a number within ±{FLOAT32_MAX:.4g}, or auto"
        )
    return value


def register(subparsers: Any) -> None:
    """Add ``ampkit convert``."""
    p = subparsers.add_parser(
        "convert", help="store arrays as reduced-precision tar shards", description=__doc__
    )
    p.add_argument("sources", nargs="+", metavar="SRC", help=".npz/.npy files or folders of them")
    add_flag(
        p,
        "out",
        type=path_arg,
        required=True,
        metavar="DIR",
        help="output folder of shards and manifest.json",
    )
    add_flag(
        p,
        "dtype",
        default="auto",
        choices=("fp16", "bf16", "int16", "auto"),
        help="stored dtype; auto: per sample int16 if integer-valued, else fp16, else bf16",
    )
    add_flag(
        p,
        "offset",
        default=None,
        metavar="VALUE|auto",
        help="store x - offset (auto: middle of the value range); default: none (--dtype auto: fp16 takes the middle where that lowers its error)",
    )
    add_flag(p, "array-key", default=None, metavar="KEY", help="array inside .npz files (default: the first)")
    add_flag(p, "shard-size", default="1G", metavar="BYTES", help="max bytes per shard (K/M/G suffixes)")
    add_flag(p, "samples-per-shard", type=int, default=1000, metavar="N", help="max samples per shard")
    add_flag(
        p,
        "workers",
        type=int,
        default=1,
        metavar="N",
        help="processes encoding and writing whole shards (default 1; the output is byte-identical for "
        "any N, and up to one per core speeds it up, e.g. --workers $(nproc))",
    )
    add_flag(
        p,
        "on-overflow",
        default="error",
        choices=("error", "clip"),
        help="values beyond the stored dtype's range: fail naming the sample, or clip and count",
    )
    add_flag(p, "on-nonfinite", default="error", choices=("error", "keep"), help="NaN/Inf in a source")
    add_flag(
        p,
        "max-abs-error",
        type=float,
        default=None,
        metavar="E",
        help="--dtype auto only: fp16 accepted up to this (default 1.0; refused with a fixed --dtype)",
    )
    add_flag(
        p,
        "max-rel-error",
        type=float,
        default=None,
        metavar="R",
        help="--dtype auto only: bf16 accepted up to this (default 0.004; refused with a fixed --dtype)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def _mb(n: float) -> str:
    return f"{n / 1e6:,.2f} MB"


def print_summary(result: Any, out: str, workers: int) -> None:
    """The closing summary: counts, storage ratios, worst errors, throughput, shard-count advice."""
    from ..termtext import visible

    m = result.manifest
    n_shards = len(m["shards"])
    print(
        f"converted {m['total_samples']} samples into {n_shards} shards in {visible(out)} "
        f"(wrote {result.shards_written}"
        + (f" ({result.shards_replaced} rewritten: their sources changed)" if result.shards_replaced else "")
        + f", kept {result.shards_skipped} from an earlier run, "
        f"removed {result.orphans_removed} unfinished)"
    )
    print("dtypes: " + ", ".join(f"{k} {v}" for k, v in m["dtype_counts"].items()))
    f32 = m["stored_bytes"] / m["storage_ratio_vs_float32"] if m["storage_ratio_vs_float32"] else 0
    print(
        f"storage: {_mb(m['stored_bytes'])} on disk; ratio {m['storage_ratio_vs_float32']:.4f} of float32 "
        f"({_mb(f32)}), {m['storage_ratio_vs_source']:.4f} of the source dtype ({_mb(m['source_bytes'])})"
    )
    w = m["worst_error"]
    print(
        f"worst error: max abs {w['max_abs']:g} (key {w['max_abs_key']}), max rel {w['max_rel']:g} "
        f"(key {w['max_rel_key']}); values clipped: {m['overflow_clipped']}"
        + (f"; NaN/Inf kept: {m['nonfinite']}" if m.get("nonfinite") else "")
    )
    if result.seconds > 0 and result.float32_bytes_read:
        rate = result.float32_bytes_read / result.seconds / 1e6
        print(
            f"throughput: {rate:,.1f} MB/s of float32 input ({workers} workers, {rate / workers:,.1f} MB/s each)"
        )
    print(
        f"shards: {n_shards}; a loader splits shards over ranks x workers, so use at least that many "
        "shards (e.g. 8 for 2 ranks x 4 workers); lower --samples-per-shard for more"
    )


def check_tolerances(args: argparse.Namespace) -> None:
    """``--max-abs-error``/``--max-rel-error`` choose among dtypes (``--dtype auto``); with a fixed
    ``--dtype`` they would limit nothing, so they are refused rather than silently ignored."""
    given = [f for f in ("max_abs_error", "max_rel_error") if getattr(args, f) is not None]
    if args.dtype != "auto" and given:
        flag = "--" + given[0].replace("_", "-")
        raise UsageError(
            f"{flag} {getattr(args, given[0]):g} with --dtype {args.dtype}: the tolerances pick the dtype "
            "of --dtype auto and limit nothing with a fixed dtype (its error is recorded per sample); "
            f"valid: --dtype auto with {flag}, or --dtype {args.dtype} without it"
        )


def run(args: argparse.Namespace) -> int:
    """Convert, showing a progress bar, then print the summary."""
    from pathlib import Path

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from ..data.codec import CodecOptions
    from ..data.convert import ConvertOptions, convert, sample_delay
    from ..data.sources import discover

    sample_delay()  # its environment variable, checked before anything is written
    check_positive(args.workers, "--workers", integer=True)
    check_positive(args.samples_per_shard, "--samples-per-shard", integer=True)
    check_positive(args.max_abs_error, "--max-abs-error", allow_zero=True)
    check_positive(args.max_rel_error, "--max-rel-error", allow_zero=True)
    check_tolerances(args)
    codec = CodecOptions(
        dtype=args.dtype,
        offset=parse_offset(args.offset),
        on_overflow=args.on_overflow,
        on_nonfinite=args.on_nonfinite,
        max_abs_error=1.0 if args.max_abs_error is None else args.max_abs_error,
        max_rel_error=0.004 if args.max_rel_error is None else args.max_rel_error,
    )
    opts = ConvertOptions(
        out=Path(args.out),
        codec=codec,
        shard_size=parse_size(args.shard_size),
        samples_per_shard=args.samples_per_shard,
        workers=args.workers,
    )
    check_out_dir(opts.out)
    sources = discover(args.sources, args.array_key)
    columns = (
        TextColumn("convert"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("samples"),
        TimeRemainingColumn(),
    )
    # auto_refresh off: no refresh thread, so convert's worker processes can be forked safely
    progress = Progress(
        *columns, console=Console(stderr=True), disable=args.quiet, transient=True, auto_refresh=False
    )
    with progress as bar:
        task = bar.add_task("convert", total=len(sources))

        def advance(_nbytes: int) -> None:
            bar.advance(task)
            bar.refresh()

        try:
            result = convert(sources, opts, on_sample=advance)
        except OSError as err:  # an environment fault: the complete shards stay for the resume
            where = err.filename or args.out
            print(
                f"ampkit convert: error: {err.strerror or err} ({where}); complete shards are kept: "
                "fix this and rerun the same command to resume",
                file=sys.stderr,
            )
            return 1
    print_summary(result, args.out, args.workers)
    return 0
