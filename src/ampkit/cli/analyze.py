"""``ampkit analyze``: would this task over/underflow in fp16, which loss scale covers it, what does a mode cost?

Runs N steps in fp32 recording per-layer activation and gradient magnitudes, and the same N
steps in ``--precision`` from the same start: prints the fp16 range table, the recommendation
(a covering loss scale, or bf16), the loss and weight drift per step, and the mode's share of
matmul/conv FLOPs that ran in low precision.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from typing import Any

from ..precision.args import add_precision_args
from .parser import add_flag, path_arg
from .train import add_compile_flag, add_run_args


def register(subparsers: Any) -> None:
    """Add ``ampkit analyze``."""
    parser = subparsers.add_parser(
        "analyze", help="fp16 range analysis and drift of a mode against fp32", description=__doc__
    )
    add_run_args(parser)
    add_precision_args(parser)
    add_flag(parser, "steps", type=int, default=20, help="steps of each run (fp32 and --precision)")
    add_flag(parser, "lr", type=float, default=None, help="AdamW learning rate (default: the task's)")
    add_flag(parser, "json", action="store_true", help="print the report as JSON instead of tables")
    add_flag(parser, "out", type=path_arg, default=None, help="also write the JSON report to this file")
    add_flag(parser, "no-progress", action="store_true", help="no progress bar")
    add_compile_flag(parser)
    parser.set_defaults(func=run)


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.3g}" if value and math.isfinite(value) else str(value)


def _pct(value: float | None) -> str:
    return "-" if value is None else ("0" if value == 0 else f"{100 * value:.3g}%")


def render(report: dict[str, Any], console: Any) -> None:
    """The report as rich tables: ranges, recommendation, drift, FLOP share."""
    from rich.table import Table

    from ..termtext import cells, markup

    ranges = report["ranges"]  # layer names and the task come from the user's module: shown literally
    table = Table(title=f"fp16 ranges of {markup(report['task'])} (fp32 run, {report['steps']} steps)")
    for column in ("layer", "type", "act max", "act min>0", "act <2^-24", "act >65504"):
        table.add_column(column, justify="left" if column in ("layer", "type") else "right")
    for column in ("grad max", "grad p1%", "grad <2^-24", "grad >65504", "fp16 issues"):
        table.add_column(column, justify="left" if column == "fp16 issues" else "right")
    for layer in ranges["layers"]:
        act, grad = layer["act"] or {}, layer["grad"] or {}
        style = "bold red" if layer["issues"] else None
        table.add_row(
            *cells(layer["name"], layer["type"]),
            _fmt(act.get("max")),
            _fmt(act.get("min_nonzero")),
            _pct(act.get("share_below_fp16_tiny")),
            _pct(act.get("share_above_fp16_max")),
            _fmt(grad.get("max")),
            _fmt(grad.get("p01_nonzero")),
            _pct(grad.get("share_below_fp16_tiny")),
            _pct(grad.get("share_above_fp16_max")),
            markup(", ".join(layer["issues"]) or "ok"),
            style=style,
        )
    console.print(table)
    advice = f"[bold]recommendation:[/bold] {markup(ranges['recommendation'])}"
    if ranges["loss_scale"] is not None:
        lo, hi = ranges["scale_range"] or (ranges["loss_scale"], ranges["loss_scale"])
        advice += f" with loss scale {ranges['loss_scale']:g} (covering {lo:g}..{hi:g})"
    console.print(f"{advice}: {markup(ranges['reason'])}")
    mode = markup(report["mode"])
    drift = Table(title=f"drift of {mode} against fp32 (same start, same batches)")
    for column in ("step", "loss fp32", f"loss {mode}", "delta", "weight drift", "applied"):
        drift.add_column(column, justify="right")
    for row in report["drift"]:
        drift.add_row(
            str(row["step"]),
            f"{row['loss_fp32']:.5g}",
            f"{row['loss_mode']:.5g}",
            f"{row['loss_delta']:+.3g}",
            f"{row['weight_drift']:.3g}",
            "yes" if row["applied"] else "skipped",
        )
    console.print(drift)
    share = report["flop_share"]
    dtypes = ", ".join(f"{k} {v:.3g}" for k, v in share["by_dtype"].items()) or "none"
    console.print(
        f"{mode}: {100 * share['share']:.1f}% of matmul/conv FLOPs in low precision ({markup(dtypes)})"
    )


def run(args: argparse.Namespace) -> int:
    """Analyze, print tables (or JSON), optionally write the JSON report."""
    from rich.console import Console
    from rich.progress import Progress

    from ..engine import TrainConfig
    from ..fsutil import write_atomic
    from ..numerics import analyze
    from ..termtext import markup
    from .checks import check_out_file
    from .train import check_run_args, checked_mode

    if args.out is not None:
        check_out_file(args.out, "--out")
    device = check_run_args(args)
    config = TrainConfig(
        task=args.task,
        precision=checked_mode(args, device),
        keep_fp32=args.keep_fp32,
        device=device,
        batch_size=args.batch_size,
        seed=args.seed,
        size=args.size,
        lr=args.lr,
        threads=args.threads,
        progress=False,
        compile=args.compile,  # the mode's run compiled; the fp32 reference (ranges recorded) stays eager
    )
    show = not args.no_progress and sys.stderr.isatty()
    with Progress(console=Console(stderr=True), transient=True, disable=not show) as bar:
        task = bar.add_task(markup(f"analyze {args.task}: fp32 vs {config.precision}"), total=args.steps)
        report = analyze(config, args.steps, on_step=lambda _: bar.advance(task)).to_dict()
    text = json.dumps(report, indent=2)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(args.out, text + "\n")
    if args.json:
        print(text)
    else:
        render(report, Console(width=max(Console().width, 140)))
    return 0
