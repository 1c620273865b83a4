"""``ampkit plan``: per precision, the largest micro-batch of your task that fits, measured.

Each precision's batch is found by doubling, then bisection; every probe is one real training
step in a fresh process, measured for its peak memory: on a GPU against the device's memory (or
--memory-budget, as the allocator's cap), catching CUDA out-of-memory; on a CPU against
--memory-budget of peak resident memory (default: the memory available now). Each probe also
times its steps, and --global-batch N gives the accumulation that reaches N. See docs/plan.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from .parser import add_flag
from .train import TASK_HELP


def register(subparsers: Any) -> None:
    """Add ``ampkit plan``."""
    parser = subparsers.add_parser(
        "plan", help="largest micro-batch per precision that fits in memory, measured", description=__doc__
    )
    add_flag(parser, "task", default="digits", help=TASK_HELP)
    add_flag(
        parser,
        "size",
        default="default",
        choices=("default", "small", "gpu"),
        help="task size; small = tiny shapes; gpu = matmul-bound on a GPU",
    )
    add_flag(parser, "device", default=None, help="cpu or cuda[:N] (default: cuda if available, else cpu)")
    add_flag(
        parser,
        "precisions",
        default="auto",
        help="comma-separated modes, or auto: every mode run in hardware here",
    )
    add_flag(
        parser,
        "memory-budget",
        default=None,
        metavar="SIZE",
        help="memory one training process may use, e.g. 2GiB, 512MiB, 1.5GB (default: CPU: the memory "
        "available now; GPU: the device's memory)",
    )
    add_flag(
        parser,
        "global-batch",
        type=int,
        default=None,
        metavar="N",
        help="samples per optimizer step you want: prints the accumulation that reaches N",
    )
    add_flag(parser, "max-batch", type=int, default=4096, help="largest micro-batch tried")
    add_flag(
        parser, "multiple-of", type=int, default=1, help="try only micro-batches that are multiples of K"
    )
    add_flag(
        parser,
        "steps",
        type=int,
        default=2,
        help="steps each probe times after its warm-up step (memory covers all)",
    )
    add_flag(
        parser,
        "probe-timeout",
        type=float,
        default=300.0,
        metavar="SECONDS",
        help="a probe slower than this counts as not fitting",
    )
    add_flag(parser, "seed", type=int, default=0, help="seed for model init and data")
    add_flag(
        parser,
        "threads",
        type=int,
        default=None,
        help="torch CPU threads per probe (default: torch's choice)",
    )
    add_flag(parser, "keep-fp32", default=None, help="modules kept in fp32, e.g. LayerNorm,re:^head")
    parser.add_argument("--json", action="store_true", help="print only the JSON report")
    parser.set_defaults(func=run)


def _checks(args: argparse.Namespace) -> tuple[Any, list[Any], str]:
    """Every value checked before the first probe: settings, the modes' rows, the budget's source."""
    from ..errors import UsageError
    from ..hardware.budget import resolve_budget
    from ..hardware.capabilities import device_capabilities
    from ..hardware.plan import PlanSettings
    from ..study.arms import plan_arms
    from ..study.config import parse_precisions
    from .checks import check_device, check_keep_fp32, check_positive, check_steps, check_task, check_threads
    from .env import check_env

    check_env()
    for name in ("global_batch", "max_batch", "multiple_of"):
        check_positive(getattr(args, name), f"--{name.replace('_', '-')}", integer=True)
    check_steps(args.steps)
    check_threads(args.threads)
    check_positive(args.seed, "--seed", allow_zero=True, integer=True)
    check_positive(args.probe_timeout, "--probe-timeout")
    if args.multiple_of > args.max_batch:
        raise UsageError(
            f"--multiple-of {args.multiple_of}: larger than --max-batch {args.max_batch}; "
            f"valid: 1..{args.max_batch}"
        )
    device = check_device(args.device)
    if not device.startswith(("cpu", "cuda")):
        raise UsageError(
            f"--device {device}: plan measures memory on cpu and cuda only; valid: cpu, cuda, cuda:N"
        )
    check_keep_fp32(args.keep_fp32)
    budget, source = resolve_budget(args.memory_budget, device)
    import torch

    caps = device_capabilities(torch.device(device))
    rows = plan_arms(parse_precisions(args.precisions), caps)
    if not any(row.run for row in rows):
        skipped = "; ".join(f"{row.mode}: {row.reason}" for row in rows)
        here = ", ".join(row.mode for row in plan_arms(None, caps) if row.run)
        raise UsageError(
            f"--precisions {args.precisions}: none runs on {device} ({skipped}); valid here: {here}"
        )
    check_task(args.task, args.size, build=True)
    settings = PlanSettings(
        task=args.task,
        size=args.size,
        device=device,
        seed=args.seed,
        budget_bytes=budget,
        max_batch=args.max_batch,
        multiple_of=args.multiple_of,
        timed_steps=args.steps,
        probe_timeout_s=args.probe_timeout,
        global_batch=args.global_batch,
        threads=args.threads,
        keep_fp32=args.keep_fp32,
    )
    return settings, rows, source


def measure_of(device: str) -> str:
    """How the peak is measured on ``device``, for the report."""
    if device.startswith("cuda"):
        return "peak reserved by torch's CUDA caching allocator, one fresh process per probe (CUDA context not included)"
    return "peak resident memory (VmHWM) of one fresh process per probe, Python and torch included"


def run(args: argparse.Namespace) -> int:
    """Check everything, probe every runnable precision, print the table (or JSON)."""
    import torch

    from ..hardware.plan import SCHEMA, ModePlan, plan_mode
    from ..hardware.probe_server import ProbeServer

    settings, rows, source = _checks(args)

    def progress(line: str) -> None:
        print(f"ampkit plan: {line}", file=sys.stderr, flush=True)

    plans: list[ModePlan] = []
    with ProbeServer(settings.task) as server:
        for row in rows:
            if not row.run:
                plans.append(ModePlan(row.mode, status="skipped", reason=row.reason))
                continue
            for warning in row.warnings:
                progress(f"warning: {row.mode}: {warning}")
            plan = plan_mode(
                settings, row.mode, lambda req: server.probe(req, settings.probe_timeout_s), progress
            )
            plan.warnings[:0] = list(row.warnings)
            plans.append(plan)
    report = {
        "schema": SCHEMA,
        "torch": torch.__version__,
        "budget_source": source,
        "memory_measure": measure_of(settings.device),
        **settings.__dict__,
        "modes": [plan.to_dict() for plan in plans],
    }
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        render(report)
    return 1 if any(plan.status == "failed" for plan in plans) else 0


def render(report: dict[str, Any]) -> None:
    """The report as a table on stdout."""
    from rich.console import Console
    from rich.table import Table

    from ..hardware.budget import format_size
    from ..termtext import cells, markup

    budget = format_size(report["budget_bytes"]) if report["budget_bytes"] else "the device's memory"
    where = markup(f"{report['task']} ({report['size']}) on {report['device']}")  # a task may be module:name
    table = Table(
        title=f"Largest micro-batch per precision: {where}, budget {markup(budget)}",
        title_justify="left",
        caption=markup(f"memory: {report['memory_measure']}; budget: {report['budget_source']}"),
        caption_justify="left",
    )
    unit = next((m["item_unit"] for m in report["modes"] if m.get("max_batch")), "samples")
    columns = ["precision", "largest batch", "peak memory", "samples/s"]
    if unit != "samples":
        columns.append(f"{unit}/s")
    if report["global_batch"]:
        columns.append(f"accumulate x micro for {report['global_batch']}")
    columns.append("limited by / note")
    for column in columns:
        table.add_column(
            markup(column), justify="left" if column in ("precision", "limited by / note") else "right"
        )
    for mode in report["modes"]:
        table.add_row(*cells(*_cells(mode, unit, bool(report["global_batch"]))))
    Console(width=max(100, Console().width)).print(table)


def _rate(value: float | None) -> str:
    if not value:
        return "-"
    return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"


def _cells(mode: dict[str, Any], unit: str, with_global: bool) -> list[str]:
    from ..hardware.budget import format_size

    batch = mode["max_batch"]
    cells = [mode["precision"], str(batch) if batch else "-", format_size(mode["peak_bytes"])]
    cells.append(_rate(mode["samples_per_s"]))
    if unit != "samples":
        cells.append(_rate(mode["items_per_s"]))
    if with_global:
        acc = mode["accumulation"]
        text = f"{acc['accumulate']} x {acc['micro_batch']}" if acc else "-"
        if acc and acc["effective"] != acc["global_batch"]:
            text += f" = {acc['effective']}"
        cells.append(text)
    note = mode["reason"] if mode["status"] == "measured" else f"{mode['status']}: {mode['reason']}"
    cells.append((note or "-") + ("; warned (see above / --json)" if mode["warnings"] else ""))
    return cells
