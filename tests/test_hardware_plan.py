"""``ampkit plan``: the search (doubling, then bisection) against fake probes, and real probes on the CPU.

The fake probe models peak memory as ``base + per_sample * batch`` (what a real step's memory
does), so the expected answer is known exactly. The real-probe tests run tinygpt's small size in
fresh processes against a budget set a little above what one process needs here (measured first),
so they are fast and hold on any machine; bf16-true must fit a larger batch than fp32 there.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable
from typing import Any

import pytest
from proc_state import gone

from ampkit.cli import main
from ampkit.cli.plan import render
from ampkit.errors import UsageError
from ampkit.hardware import device_capabilities
from ampkit.hardware.budget import MIN_BUDGET, format_size, parse_size
from ampkit.hardware.plan import PlanSettings, accumulation, largest_batch, plan_mode
from ampkit.hardware.probe import ProbeRequest, ProbeResult
from ampkit.hardware.probe_server import ProbeServer

MiB = 1024**2


def linear_probe(
    budget: int, base: int = 200 * MiB, per_sample: int = 50_000, status_over: str = "over"
) -> tuple[Callable[[int], ProbeResult], list[int]]:
    """A probe whose peak is ``base + per_sample * batch``; the batches it was asked for."""
    asked: list[int] = []

    def probe(batch: int) -> ProbeResult:
        asked.append(batch)
        peak = base + per_sample * batch
        status = "ok" if peak <= budget else status_over
        return ProbeResult(batch, status, peak_bytes=peak, step_times_s=[0.01 * batch])

    return probe, asked


@pytest.mark.parametrize("budget_mib", [201, 210, 256, 300, 333, 395])
def test_the_search_finds_exactly_the_largest_batch_by_doubling_then_bisection(budget_mib: int) -> None:
    budget = budget_mib * MiB
    probe, asked = linear_probe(budget)
    search = largest_batch(probe, max_batch=4096)
    expected = (budget - 200 * MiB) // 50_000
    assert search.best is not None and search.best.batch == expected
    assert search.limit == "memory" and search.error is None
    first_failure = next(i for i, b in enumerate(asked) if 200 * MiB + 50_000 * b > budget)
    assert asked[: first_failure + 1] == [2**i for i in range(first_failure + 1)]  # doubling
    assert len(asked) - first_failure - 1 <= first_failure  # bisection: at most log2 of the gap
    assert len(set(asked)) == len(asked)  # no batch probed twice


def test_the_search_stops_at_max_batch_and_keeps_to_multiples() -> None:
    probe, asked = linear_probe(10**12)
    search = largest_batch(probe, max_batch=1000)
    assert search.best is not None and search.best.batch == 1000 and search.limit == "max-batch"
    assert asked == [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1000]
    probe, asked = linear_probe(200 * MiB + 50_000 * 700)
    search = largest_batch(probe, max_batch=4096, multiple_of=64)
    assert search.best is not None and search.best.batch == 640  # 700 rounded down to a multiple of 64
    assert all(b % 64 == 0 for b in asked) and asked[:5] == [64, 128, 256, 512, 1024]


def test_the_search_reports_nothing_fits_and_stops_at_a_task_error() -> None:
    probe, asked = linear_probe(100 * MiB)  # less than the base: not even batch 1
    search = largest_batch(probe, max_batch=4096)
    assert search.best is None and asked == [1] and search.limit == "memory"

    def broken(batch: int) -> ProbeResult:
        return ProbeResult(batch, "ok" if batch < 8 else "error", reason="ValueError: bad shape")

    search = largest_batch(broken, max_batch=4096)
    assert search.error == "ValueError: bad shape" and search.best is not None and search.best.batch == 4


def test_a_task_with_smaller_batches_caps_the_search_at_what_it_delivers() -> None:
    def probe(batch: int) -> ProbeResult:
        if batch > 1437:
            return ProbeResult(batch, "short", delivered=1437)
        return ProbeResult(batch, "ok", peak_bytes=batch)

    search = largest_batch(probe, max_batch=4096)
    assert search.best is not None and search.best.batch == 1437 and search.limit == "task"
    assert [p.batch for p in search.probes][-2:] == [2048, 1437]  # straight to the task's size


def test_a_timed_out_probe_bounds_the_search_like_a_failure() -> None:
    probe, _ = linear_probe(200 * MiB + 50_000 * 300, status_over="timeout")
    search = largest_batch(probe, max_batch=4096)
    assert search.best is not None and search.best.batch == 300 and search.limit == "timeout"


@pytest.mark.parametrize(
    ("global_batch", "largest", "accumulate", "micro", "effective"),
    [
        (1000, 384, 3, 334, 1002),
        (1024, 256, 4, 256, 1024),
        (64, 4096, 1, 64, 64),
        (7, 2, 4, 2, 8),
        (1, 1, 1, 1, 1),
    ],
)
def test_accumulation_reaches_the_global_batch_with_the_fewest_micro_batches(
    global_batch: int, largest: int, accumulate: int, micro: int, effective: int
) -> None:
    acc = accumulation(global_batch, largest)
    assert (acc.accumulate, acc.micro_batch, acc.effective) == (accumulate, micro, effective)
    assert acc.micro_batch <= largest and acc.effective >= global_batch


@pytest.mark.parametrize(
    ("text", "value"),
    [("2GiB", 2 * 1024**3), ("512MiB", 512 * MiB), ("1.5GB", 1_500_000_000), ("2g", 2 * 1024**3),
     ("2 Gi", 2 * 1024**3), ("100000000", 100_000_000), ("0.5TiB", 1024**4 // 2), ("64M", MIN_BUDGET)],
)  # fmt: skip
def test_memory_budgets_parse_in_binary_and_decimal_units(text: str, value: int) -> None:
    assert parse_size(text) == value


@pytest.mark.parametrize("text", ["abc", "-1GiB", "2XB", "nan", "1e999GiB", "GiB", "", "1,5GiB"])
def test_garbage_budgets_are_one_usage_line(text: str) -> None:
    with pytest.raises(UsageError, match=r"^--memory-budget .*valid: a size such as 2GiB"):
        parse_size(text)


def test_plan_mode_turns_the_search_into_a_row() -> None:
    probe, _ = linear_probe(200 * MiB + 50_000 * 300)
    settings = PlanSettings(task="tinygpt", budget_bytes=200 * MiB + 50_000 * 300, global_batch=1000)
    lines: list[str] = []

    def fake(request: ProbeRequest) -> ProbeResult:
        assert request.timed_steps == 2 and request.precision == "bf16-true"
        return probe(request.batch)

    row = plan_mode(settings, "bf16-true", fake, lines.append)
    assert (row.status, row.max_batch, row.limit) == ("measured", 300, "memory")
    assert row.peak_bytes == 200 * MiB + 50_000 * 300
    assert row.step_time_s == pytest.approx(3.0) and row.samples_per_s == pytest.approx(100.0)
    assert row.accumulation is not None and (row.accumulation.accumulate, row.accumulation.micro_batch) == (
        4,
        250,
    )
    assert row.reason == "batch 301 over budget"
    assert len(lines) == len(row.probes) and lines[0].startswith("bf16-true batch 1: fits, peak 200.0 MiB")
    tiny, _ = linear_probe(MiB)
    nothing = plan_mode(PlanSettings(budget_bytes=MiB), "fp32", lambda r: tiny(r.batch))
    assert nothing.status == "nothing fits" and nothing.max_batch is None
    assert nothing.reason is not None and nothing.reason == "batch 1: over the 1.0 MiB budget, peak 200.0 MiB"


def _json_out(capsys: pytest.CaptureFixture[str], argv: list[str]) -> tuple[int, dict[str, Any], str]:
    capsys.readouterr()
    code = main(argv)
    out, err = capsys.readouterr()
    return code, json.loads(out), err


@pytest.mark.slow
@pytest.mark.skipif(
    not device_capabilities("cpu").bf16_in_hardware,
    reason="bf16 is emulated on this CPU (30-80x slower than fp32): bf16-true probes at large batches "
    "would not fit the CI budget; the search itself is tested with fake probes above",
)
def test_real_probes_bf16_true_fits_a_larger_batch_than_fp32(capsys: pytest.CaptureFixture[str]) -> None:
    """Acceptance on the CPU: per mode the largest batch and the peak measured at it; bf16-true's
    16-bit activations fit more samples in the same budget than fp32's."""
    with ProbeServer("tinygpt") as server:
        one = server.probe(ProbeRequest("tinygpt", "fp32", 64, size="small", threads=1), 120)
    assert one.fits and one.peak_bytes is not None and one.baseline_bytes is not None
    assert one.peak_bytes > one.baseline_bytes > 0
    # What one process needs here, plus room for activations. bf16-true's activations grow ~0.75x as fast
    # as fp32's per sample but its fixed cost is ~10 MiB higher, and VmHWM moves by ~15 MiB between runs:
    # 192 MiB of headroom puts the two largest batches ~700 samples apart, far beyond that noise.
    budget = one.peak_bytes + 192 * MiB
    argv = ["plan", "--task", "tinygpt", "--size", "small", "--precisions", "fp32,bf16-true",
            "--memory-budget", str(budget), "--threads", "1", "--multiple-of", "64", "--max-batch", "8192",
            "--global-batch", "10000", "--json"]  # fmt: skip
    code, report, err = _json_out(capsys, argv)
    assert code == 0, err
    fp32, bf16 = report["modes"]
    assert (fp32["precision"], bf16["precision"]) == ("fp32", "bf16-true")
    for mode in (fp32, bf16):
        assert mode["status"] == "measured" and mode["limit"] == "memory"
        assert 64 <= mode["max_batch"] < 8192 and mode["max_batch"] % 64 == 0
        assert one.peak_bytes <= mode["peak_bytes"] <= budget  # measured at that batch, within budget
        assert mode["samples_per_s"] > 0 and mode["items_per_s"] == pytest.approx(16 * mode["samples_per_s"])
        failed = [p for p in mode["probes"] if p["batch"] == mode["max_batch"] + 64]
        assert failed and failed[0]["status"] == "over" and failed[0]["peak_bytes"] > budget
        acc = mode["accumulation"]
        assert acc["accumulate"] == -(-10000 // mode["max_batch"]) and acc["effective"] >= 10000
    assert bf16["max_batch"] > fp32["max_batch"]
    assert err.count("ampkit plan: fp32 batch ") == len(fp32["probes"])  # a progress line per probe
    assert report["budget_bytes"] == budget and "VmHWM" in report["memory_measure"]

    render(report)  # the table a user reads: largest batch and peak per mode
    table = capsys.readouterr().out
    for mode in (fp32, bf16):
        assert f"{mode['max_batch']}" in table and format_size(mode["peak_bytes"]) in table


@pytest.mark.slow
def test_real_probes_report_a_short_task_a_timeout_and_a_failing_task(
    capfd: pytest.CaptureFixture[str],
) -> None:
    with ProbeServer("digits") as server:
        short = server.probe(ProbeRequest("digits", "fp32", 2048, size="small", threads=1), 120)
        slow = server.probe(ProbeRequest("digits", "fp32", 8, size="small", threads=1), 0.01)
    assert short.status == "short" and short.delivered == 1797 - 1797 // 5  # the training split
    assert slow.status == "timeout" and slow.seconds < 10
    code, report, err = _json_out(  # capfd: the probe process writes to the file descriptors
        capfd,
        ["plan", "--task", "failing_task:make_task", "--size", "small", "--precisions", "fp32", "--json"],
    )
    assert code == 1  # a task that fails is not "nothing fits"
    (row,) = report["modes"]
    assert row["status"] == "failed" and "BatchError: shard for micro-batch 0 is unreadable" in row["reason"]
    assert "failing_task: reading micro-batch 0" in err  # the task's print went to stderr, not the JSON


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(signal, "setitimer") or not os.path.isdir("/proc"), reason="Linux only")
def test_an_interrupted_plan_leaves_no_probe_process_behind() -> None:
    seen: dict[str, int | None] = {}

    def interrupt(signum: int, frame: object) -> None:
        assert server._server is not None
        seen["server"], seen["child"] = server._server.pid, server._child
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGALRM, interrupt)
    try:
        with pytest.raises(KeyboardInterrupt), ProbeServer() as server:
            signal.setitimer(signal.ITIMER_REAL, 1.5)  # while the probe waits for a batch that never comes
            server.probe(ProbeRequest("failing_task:make_task_stuck", "fp32", 8, size="small"), 60)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    server_pid, child = seen["server"], seen["child"]
    assert server_pid is not None and child is not None  # the probe was running when Ctrl-C came
    deadline = time.monotonic() + 10
    while not (gone(server_pid) and gone(child)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert gone(server_pid) and gone(child)
