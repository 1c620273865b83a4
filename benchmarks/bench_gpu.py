"""``make bench-gpu``: ampkit's GPU figures in one command, within 8 minutes on one H100/H200.

Parts, in this order, each a child process with its own time limit; the overall limit (``--budget``,
default 440 s) shrinks a part that would overrun it and skips the parts it leaves no time for. A
part that fails or runs out of time is recorded with its reason, and the suite goes on:

  doctor    ``ampkit doctor``: what the GPU supports, measured matmul throughput per dtype
  verify    ``ampkit verify --json``: every precision mode's dtypes, scaler and learning
  compare   ``ampkit compare --task tinygpt --size gpu`` (GPT-2 small's shape) over fp32, tf32,
            bf16-mixed, fp16-mixed, bf16-true, fp8-mixed: step time, speedup over real fp32,
            NVML energy, peak memory, MFU against the dtype's dense peak
  compile   the same study with ``--compile on``: compiled step time, compile time apart
  overhead  ``benchmarks/overhead.py --device cuda``: ampkit's step time over a hand-written
            torch.amp loop, eager and compiled, fp32 and the fastest 16-bit mode
  data      ct-like float16 shards through ``IndexedShards``' loader into the GPU: 2-byte batches
            (``output_dtype="float16"``, widened on the GPU) vs float32 batches widened in the workers

Progress goes to the terminal as each part runs; ``docs/benchmarks-gpu.md`` is written at the end
(atomically) naming the device, with each part's figures or its failure. Without a CUDA GPU the
suite says so in one line and exits 0; with one, it exits 1 when a part failed or timed out (after
writing the report). A study interrupted by its time limit keeps what it measured.

    python benchmarks/bench_gpu.py [--budget 440] [--out runs/bench-gpu] [--doc docs/benchmarks-gpu.md]
"""

from __future__ import annotations

import argparse
import datetime
import inspect
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
#: The modes of the compare parts (fp64 and fp16-true are not training choices on a GPU).
MODES = "fp32,tf32,bf16-mixed,fp16-mixed,bf16-true,fp8-mixed"
#: The same modes for the compiled study, most wanted first: a compile of GPT-2 small's shape takes
#: about a minute per mode, so where the time limit stops the study it loses the least wanted ones.
COMPILE_MODES = "fp32,bf16-mixed,fp8-mixed,bf16-true,fp16-mixed,tf32"
#: Seconds kept back from the overall budget for writing the report.
RESERVE_S = 10.0
#: A part given less than this is skipped rather than started.
MIN_PART_S = 15.0


@dataclass
class Part:
    """One part of the suite: a command and how to read what it produced."""

    name: str
    limit_s: float
    argv: Callable[[Path], list[str]]
    """The command, given the part's output folder."""
    summary: Callable[[Path, str], list[str]]
    """Markdown lines from the output folder and the captured output."""


@dataclass
class Outcome:
    """What one part did."""

    name: str
    status: str
    """``ok``, ``failed``, ``timed out`` or ``skipped``."""
    seconds: float = 0.0
    reason: str = ""
    lines: list[str] = field(default_factory=list)
    tail: list[str] = field(default_factory=list)


def ampkit(*args: str) -> list[str]:
    return [sys.executable, "-m", "ampkit", *args]


def compare_argv(out: Path, modes: str, steps: int, warmup: int, *extra: str) -> list[str]:
    return ampkit("compare", "--task", "tinygpt", "--size", "gpu", "--precisions", modes, "--batch-size", "8",
                  "--steps", str(steps), "--warmup-steps", str(warmup), "--device", "cuda", "--out", str(out),
                  *extra)  # fmt: skip


def _fig(summary: dict[str, Any], key: str, scale: float = 1.0, digits: int = 1) -> str:
    fig = summary.get(key)
    if not fig:
        return "-"
    if fig.get("value") is None:
        return "unavailable"
    return f"{fig['value'] * scale:,.{digits}f}"


def compare_summary(out: Path, output: str) -> list[str]:
    """The study as a table: step time, speedup over fp32, throughput, memory, energy per step, MFU."""
    path = out / "results.json"
    if not path.is_file():
        return ["no results.json was written"]
    study = json.loads(path.read_text())
    timed = study["settings"]["steps"] - study["settings"]["warmup_steps"]
    lines = [
        f"{study['settings']['steps']} steps per arm, the first {study['settings']['warmup_steps']} excluded "
        f"(where a compile happens); batch 8 × 1024 tokens; each arm in a fresh process; energy per step = NVML "
        f"energy over the timed steps ÷ {timed}. Full report: `{out}/report.md`.",
        "",
        "| arm | status | step ms | speedup vs fp32 | tokens/s | peak allocated MiB | energy J/step "
        "| MFU % | compile s |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for arm in study["arms"]:
        s = arm.get("summary") or {}
        energy = s.get("energy_j", {}).get("value")
        per_step = f"{energy / timed:.2f}" if energy is not None and timed else "unavailable"
        reason = "" if arm["status"] == "measured" else f": {arm.get('reason') or ''}"
        lines.append(
            f"| {arm['mode']} | {arm['status']}{reason} | {_fig(s, 'step_time_median_s', 1e3)} "
            f"| {_fig(s, 'speedup', digits=2)} | {_fig(s, 'throughput', digits=0)} "
            f"| {_fig(s, 'peak_mem_allocated_bytes', 2**-20, 0)} | {per_step} | {_fig(s, 'mfu', 100)} "
            f"| {_fig(s, 'compile_time_s')} |"
        )
    arms = {a["mode"].removesuffix("+compile"): a.get("summary") or {} for a in study["arms"]}
    fp32, bf16 = arms.get("fp32", {}), arms.get("bf16-mixed", {})
    a, b = (x.get("step_time_median_s", {}).get("value") for x in (fp32, bf16))
    if a and b:
        lines += ["", f"P3: bf16-mixed is {a / b:.2f}x real fp32 (TF32 off) per step."]
    return lines


def json_in(output: str, opener: str) -> Any:
    """The first JSON value that starts a line of ``output`` with ``opener`` (log lines around it
    are skipped: the part's stderr is merged into its stdout); None when there is none."""
    decoder = json.JSONDecoder()
    for line_start in [0, *(i + 1 for i, ch in enumerate(output) if ch == "\n")]:
        if output.startswith(opener, line_start):
            try:
                return decoder.raw_decode(output, line_start)[0]
            except json.JSONDecodeError:
                continue
    return None


def verify_summary(out: Path, output: str) -> list[str]:
    reports = json_in(output, "[")
    if not isinstance(reports, list):
        return ["verify printed no JSON report"]
    lines = ["| mode | result | checks |", "| --- | --- | --- |"]
    for rep in reports:
        checks = "; ".join(f"{c['name']}: {c['detail']}" for c in rep.get("checks", [])) or "; ".join(
            rep["notes"]
        )
        lines.append(f"| {rep['mode']} | {rep['status']} | {checks.replace('|', '/')} |")
    return lines


def text_summary(keep: Callable[[str], bool] | None = None) -> Callable[[Path, str], list[str]]:
    def summary(out: Path, output: str) -> list[str]:
        shown = [ln for ln in output.splitlines() if ln.strip() and (keep is None or keep(ln))]
        return ["```", *shown[-60:], "```"]

    return summary


def data_summary(out: Path, output: str) -> list[str]:
    result = json_in(output, "{")
    if not isinstance(result, dict):
        return ["the data part printed no JSON result"]
    if result.get("status") != "ok":
        return [f"{result.get('status')}: {result.get('reason')}"]
    lines = [result["setup"], "", "| batches | host→device bytes/voxel | volumes/s | GB/s float32 on the GPU |",
             "| --- | --- | --- | --- |"]  # fmt: skip
    for row in result["rows"]:
        lines.append(
            f"| {row['name']} | {row['bytes_per_voxel']} | {row['volumes_per_s']:.1f} | {row['gb_per_s']:.2f} |"
        )
    return lines


PARTS = [
    Part("doctor", 25, lambda out: ampkit("doctor", "--device", "cuda", "--budget", "6"), text_summary()),
    Part("verify", 50, lambda out: ampkit("verify", "--device", "cuda", "--json"), verify_summary),
    Part("compare", 85, lambda out: compare_argv(out, MODES, 25, 8), compare_summary),
    Part(
        "compile",
        170,
        lambda out: compare_argv(out, COMPILE_MODES, 15, 5, "--compile", "on"),
        compare_summary,
    ),
    Part(
        "overhead",
        55,
        lambda out: [
            sys.executable,
            str(ROOT / "benchmarks" / "overhead.py"),
            "--device",
            "cuda",
            "--rounds",
            "40",
            "--steps",
            "1",
            "--warmup",
            "4",
            "--batch-size",
            "16",
        ],
        text_summary(lambda ln: "overhead" in ln or "machine" in ln or "precisions" in ln or "median" in ln),
    ),
    Part(
        "data",
        35,
        lambda out: [sys.executable, str(Path(__file__).resolve()), "--part", "data", "--out", str(out)],
        data_summary,
    ),
]


def _stop(proc: subprocess.Popen[str]) -> None:
    """SIGTERM the part's process group (a study then writes what it measured), SIGKILL after 20 s."""
    for sig, wait_s in ((signal.SIGTERM, 20.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait_s)
            return
        except subprocess.TimeoutExpired:
            continue


def run_part(part: Part, out: Path, limit_s: float) -> Outcome:
    """Run ``part`` for at most ``limit_s`` seconds, echoing its output with the part's name."""
    out.mkdir(parents=True, exist_ok=True)
    began = time.monotonic()
    proc = subprocess.Popen(part.argv(out), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            errors="replace", start_new_session=True, cwd=ROOT)  # fmt: skip
    captured: list[str] = []

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            captured.append(line.rstrip("\n"))
            print(f"  {part.name} | {line.rstrip()}", flush=True)

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    try:
        code = proc.wait(timeout=limit_s)
        status = "ok" if code == 0 else "failed"
        reason = "" if code == 0 else f"exit code {code}"
    except subprocess.TimeoutExpired:
        _stop(proc)
        status, reason = "timed out", f"stopped after its limit of {limit_s:.0f} s"
    reader.join(timeout=5)
    output = "\n".join(captured)
    try:
        lines = part.summary(out, output)
    except Exception as err:  # a summary must never end the suite
        lines = [f"could not read its output: {type(err).__name__}: {err}"]
    return Outcome(part.name, status, time.monotonic() - began, reason, lines, captured[-15:])


def data_part(
    out: Path, device: str = "cuda", volumes: int = 64, side: int = 64, workers: int = 4
) -> dict[str, Any]:
    """float16 shards into the GPU: 2-byte batches widened there vs float32 batches from the workers.
    (``device="cpu"`` and small sizes: the tests' dry run of the same code.)"""
    from ampkit.data.loader_indexed import IndexedShards
    from ampkit.data.preprocess import PreprocessConfig, finish_batch
    from ampkit.tasks.ct import make_phantom_shards

    if "output_dtype" not in inspect.signature(IndexedShards).parameters:
        return {"status": "not available", "reason": "this ampkit's loaders have no output_dtype"}
    batch = 8
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    shards = make_phantom_shards(out / "shards", volumes, side, per_shard=16)
    chain = {"clip": (-200.0, 600.0), "normalize": "range", "add_channel": True}
    setups = {
        "float16, widened on the GPU": (PreprocessConfig(**chain, on="device"), "float16", 2),  # type: ignore[arg-type]
        "float32, widened in the workers": (PreprocessConfig(**chain), "float32", 4),  # type: ignore[arg-type]
    }
    times: dict[str, list[float]] = {name: [] for name in setups}
    loaders = {
        name: (IndexedShards(shards, preprocess=cfg, output_dtype=dtype).loader(
            batch, num_workers=workers, pin_memory=device.startswith("cuda"), persistent_workers=workers > 0), cfg)
        for name, (cfg, dtype, _) in setups.items()
    }  # fmt: skip
    for round_ in range(3):  # round 0 warms workers and the page cache; rounds interleave the two
        for name, (loader, cfg) in loaders.items():
            sync()
            began = time.perf_counter()
            for item in loader:
                x = finish_batch(item, device, cfg)["x"]
                assert x.dtype == torch.float32 and x.device.type == torch.device(device).type
            sync()
            if round_:
                times[name].append(time.perf_counter() - began)
    rows = []
    for name, (_, _, nbytes) in setups.items():
        best = min(times[name])
        rows.append({"name": name, "bytes_per_voxel": nbytes, "volumes_per_s": volumes / best,
                     "gb_per_s": volumes * side**3 * 4 / best / 1e9})  # fmt: skip
    setup = (f"{volumes} phantoms of {side}³ stored as float16, batches of {batch}, {workers} workers, pinned memory; "
             "clip + range normalisation; fastest of 2 interleaved rounds after a warm-up round")  # fmt: skip
    return {"status": "ok", "setup": setup, "rows": rows}


def write_doc(path: Path, outcomes: list[Outcome], budget_s: float, wall_s: float) -> None:
    from ampkit.fsutil import write_atomic

    props = torch.cuda.get_device_properties(0)
    device = (
        f"{props.name} (compute capability {props.major}.{props.minor}, {props.total_memory / 2**30:.0f} GiB)"
    )
    lines = [
        "# GPU benchmarks (`make bench-gpu`)",
        "",
        f"- device: {device}; CUDA {torch.version.cuda}, torch {torch.__version__}, "
        f"{torch.cuda.device_count()} GPU(s) visible, one used",
        f"- run: {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC, {wall_s:.0f} s of a {budget_s:.0f} s "
        f"budget; command: `python benchmarks/bench_gpu.py`",
        "",
        "| part | status | seconds |",
        "| --- | --- | --- |",
        *(
            f"| {o.name} | {o.status}{': ' + o.reason if o.reason else ''} | {o.seconds:.0f} |"
            for o in outcomes
        ),
        "",
    ]
    for o in outcomes:
        lines += [f"## {o.name}", "", *(o.lines or ["(nothing recorded)"]), ""]
        if o.status not in ("ok", "skipped") and o.tail:
            lines += ["Last lines of its output:", "", "```", *o.tail, "```", ""]
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, "\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--budget", type=float, default=440.0, help="overall time limit in seconds")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "bench-gpu", help="the parts' outputs")
    parser.add_argument("--doc", type=Path, default=ROOT / "docs" / "benchmarks-gpu.md", help="the report")
    parser.add_argument("--only", default=None, help="comma-separated parts to run (default: all)")
    parser.add_argument("--part", default=None, help=argparse.SUPPRESS)  # a part run as its own process
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("bench-gpu: no CUDA GPU here (torch.cuda.is_available() is False); nothing to run")
        return 0
    if args.part == "data":
        print(json.dumps(data_part(args.out)))
        return 0
    chosen = [p for p in PARTS if args.only is None or p.name in args.only.split(",")]
    began = time.monotonic()
    outcomes: list[Outcome] = []
    for index, part in enumerate(chosen, 1):
        left = args.budget - RESERVE_S - (time.monotonic() - began)
        limit = min(part.limit_s, left)
        if limit < MIN_PART_S:
            outcomes.append(Outcome(part.name, "skipped", reason=f"overall limit: {left:.0f} s left"))
            print(f"[bench-gpu] {index}/{len(chosen)} {part.name}: skipped ({left:.0f} s of the budget left)")
            continue
        print(f"[bench-gpu] {index}/{len(chosen)} {part.name}: started (limit {limit:.0f} s, "
              f"{time.monotonic() - began:.0f} s elapsed)", flush=True)  # fmt: skip
        try:
            outcome = run_part(part, args.out / part.name, limit)
        except Exception as err:  # even a part that cannot start is one row, not the end of the suite
            outcome = Outcome(part.name, "failed", reason=f"{type(err).__name__}: {err}")
        outcomes.append(outcome)
        print(f"[bench-gpu] {part.name}: {outcome.status} in {outcome.seconds:.0f} s"
              + (f" ({outcome.reason})" if outcome.reason else ""), flush=True)  # fmt: skip
    wall = time.monotonic() - began
    write_doc(args.doc, outcomes, args.budget, wall)
    not_ok = [f"{o.name} ({o.status})" for o in outcomes if o.status != "ok"]
    print(f"[bench-gpu] done in {wall:.0f} s; wrote {args.doc}"
          + (f"; not ok: {', '.join(not_ok)}" if not_ok else "; every part ok"))  # fmt: skip
    return 1 if any(o.status in ("failed", "timed out") for o in outcomes) else 0


if __name__ == "__main__":
    sys.exit(main())
