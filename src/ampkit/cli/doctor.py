"""``ampkit doctor``: what this machine supports, how fast each dtype really is, and which mode to use."""

from __future__ import annotations

import argparse
import json
from typing import Any

from .parser import add_flag

_LEVEL_STYLE = {"hardware": "green", "emulated": "yellow", "no": "red"}
#: Longest ``--budget``: the probe takes about this long, so a typo such as 1e12 would never end.
MAX_BUDGET_S = 600.0


def register(subparsers: Any) -> None:
    """Add ``ampkit doctor``."""
    parser = subparsers.add_parser(
        "doctor",
        help="device facts, support matrix, measured throughput, recommended mode",
        description=__doc__,
    )
    add_flag(
        parser, "device", default=None, help="torch device to examine (default: cuda if available, else cpu)"
    )
    add_flag(
        parser,
        "budget",
        type=float,
        default=2.0,
        metavar="SECONDS",
        help="time for the matmul probe, all dtypes together (0: skip the measurement)",
    )
    parser.add_argument("--json", action="store_true", help="print only the JSON report (docs/doctor.md)")
    parser.set_defaults(func=run)


def _gib(value: int | None) -> str:
    return "?" if not value else f"{value / 1024**3:.1f} GiB"


def _probe_title(measured: dict[str, Any]) -> str:
    """Where and how the probe ran, with the warnings that change how to read it."""
    threads = measured["threads"]
    notes = [f"{threads} thread{'' if threads == 1 else 's'}", f"~{measured['budget_s']:g} s budget"]
    if measured["threads"] < measured["torch_threads"]:
        notes[0] += f" of {measured['torch_threads']} (cores busy: one thread gives a stable ratio)"
    load = measured["load_average"]
    if load is not None and load >= 0.75 * measured["cpu_count"]:
        notes.append(
            f"[yellow]machine busy: load {load:.1f} on {measured['cpu_count']} cores, figures noisy[/]"
        )
    return f"Measured matmul on {measured['device']} ({'; '.join(notes)})"


def render(report: dict[str, Any]) -> None:
    """Print ``report`` (from :func:`ampkit.hardware.doctor_report`) as rich tables."""
    from rich.console import Console
    from rich.table import Table

    from ..termtext import cells, markup

    console = Console()  # names and flags come from the machine and its drivers: shown literally
    facts = Table(title=f"Devices (torch {markup(report['torch'])})", title_justify="left")
    for column in ("device", "name", "compute capability", "memory", "precision-relevant flags"):
        facts.add_column(column)
    for dev in report["devices"]:
        cc = ".".join(map(str, dev["compute_capability"])) if dev["compute_capability"] else "-"
        facts.add_row(
            *cells(
                dev["type"],
                dev["name"],
                cc,
                _gib(dev["total_memory_bytes"]),
                " ".join(dev["cpu_flags"]) or "-",
            )
        )
    console.print(facts)

    support = Table(title=f"Support matrix on {markup(report['target'])}", title_justify="left")
    for column in ("format", "support", "why"):
        support.add_column(column)
    for name, entry in report["support"].items():
        style = _LEVEL_STYLE[entry["level"]]
        support.add_row(markup(name), f"[{style}]{markup(entry['level'])}[/{style}]", markup(entry["why"]))
    console.print(support)

    measured = report["throughput"]
    if measured:
        table = Table(
            title=markup(_probe_title(measured)),
            title_justify="left",
        )
        for column in ("dtype", "size", "GFLOP/s median", "best", "vs fp32 (best, same size)"):
            table.add_column(column, justify="right" if column != "dtype" else "left")
        for name, row in measured["results"].items():
            ratio = (
                "-"
                if row["ratio_to_fp32"] is None
                else f"{row['ratio_to_fp32']:.3g}x at {row['ratio_size']}²"
            )
            table.add_row(
                *cells(name, f"{row['size']}²", f"{row['gflops']:.1f}", f"{row['best_gflops']:.1f}", ratio)
            )
        console.print(table)

    rec = report["recommendation"]
    console.print(f"[bold]Recommended: {markup(rec['mode'])}[/bold] — {markup(rec['reason'])}")
    for fact in rec["facts"]:
        console.print(f"  • {markup(fact)}")
    if report["memory_advice"]:
        console.print(f"  • memory: {markup(report['memory_advice']['line'])}")


def run(args: argparse.Namespace) -> int:
    """Gather the report and print it (tables, or JSON only with ``--json``)."""
    from ..errors import UsageError
    from ..hardware import doctor_report
    from .checks import check_device, check_positive

    check_positive(args.budget, "--budget", allow_zero=True, note="seconds; 0 skips the measurement")
    if args.budget > MAX_BUDGET_S:
        raise UsageError(
            f"--budget {args.budget:g}: longer than {MAX_BUDGET_S:g} s; valid: 0..{MAX_BUDGET_S:g} "
            "seconds (0 skips the measurement)"
        )
    device = check_device(args.device)
    if args.json:
        print(json.dumps(doctor_report(device, budget_s=args.budget), indent=2))
        return 0
    from rich.console import Console

    with Console(stderr=True).status("measuring matmul throughput per dtype..."):
        report = doctor_report(device, budget_s=args.budget)
    render(report)
    return 0
