"""How far two processes at once can scale on this machine: the ceiling for "2 workers vs 1".

Runs a fixed amount of one kind of work in one process, then the same amount in each of two
forked processes at once, and prints ``2 x one process's wall time / the pair's wall time``
(2.00x: the second core adds a whole core; 1.00x: it adds nothing). Three kinds of work, the
three that conversion is made of:

* ``sha256``: hashing a 1 MiB buffer that stays in the core's cache (compute only);
* ``copy``: copying 64 MiB arrays (memory bandwidth only);
* ``cast``: torch's float32 -> float16 cast of 64 MiB arrays into a reused output (conversion's
  encode pass without the statistics).

On a machine with two real cores and memory bandwidth to spare every ratio reads ~2.0x. On a
VM whose two vCPUs share one physical core, or whose memory bandwidth one process already
uses up, they read less, and no program's two workers can beat that ratio for the same work.
``benchmarks/data_convert.py`` prints this ceiling beside its own 2-worker ratio.

    python benchmarks/scaling.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import hashlib
import multiprocessing
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch

MIB = 1 << 20


def _sha256(work: float) -> None:
    buf = np.random.default_rng(0).integers(0, 255, MIB, dtype=np.uint8).tobytes()
    for _ in range(max(1, round(384 * work))):
        hashlib.sha256(buf).digest()


def _copy(work: float) -> None:
    src = np.ones(64 * MIB // 4, np.float32)
    dst = np.empty_like(src)
    for _ in range(max(1, round(12 * work))):
        np.copyto(dst, src)


def _cast(work: float) -> None:
    torch.set_num_threads(1)
    src = torch.ones(64 * MIB // 4, dtype=torch.float32)
    dst = torch.empty(src.shape, dtype=torch.float16)
    for _ in range(max(1, round(12 * work))):
        dst.copy_(src)


WORK: dict[str, Callable[[float], None]] = {"sha256": _sha256, "copy": _copy, "cast": _cast}
"""Kinds of work measured, by name."""


def _wall(work: Callable[[float], None], amount: float, processes: int) -> float:
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=work, args=(amount,)) for _ in range(processes)]
    start = time.perf_counter()
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    return time.perf_counter() - start


def ceilings(rounds: int = 5, work: float = 1.0) -> dict[str, float]:
    """``{kind: median over rounds of 2 x wall(1 process) / wall(2 processes)}``, rounds interleaved;
    ``work`` scales the amount of each kind (1.0: ~0.3-0.5 s of one core each)."""
    ratios: dict[str, list[float]] = {k: [] for k in WORK}
    for _ in range(rounds):
        for kind, fn in WORK.items():
            one, two = _wall(fn, work, 1), _wall(fn, work, 2)
            ratios[kind].append(2 * one / two)
    return {k: statistics.median(v) for k, v in ratios.items()}


def line(found: dict[str, float]) -> str:
    """One printable line of :func:`ceilings`' result."""
    return "two processes vs one on this machine: " + ", ".join(f"{k} {v:.2f}x" for k, v in found.items())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=5, help="interleaved rounds (median kept)")
    args = ap.parse_args()
    print(line(ceilings(args.rounds)))


if __name__ == "__main__":
    main()
