"""``ampkit verify``: check every precision mode runnable here; exit 1 if any fails.

Per mode: autocast and parameters have the dtypes the mode's name promises, the loss scaler
skips a step with a planted inf (fp16-mixed), and 10 steps on a tiny problem lower the loss.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from typing import Any

from .parser import add_flag

_STATUS = {"pass": "[green]PASS[/green]", "fail": "[bold red]FAIL[/bold red]", "skip": "[dim]skip[/dim]"}
_MARK = {True: "ok", False: "[red]FAILED[/red]", None: "n/a"}


def register(subparsers: Any) -> None:
    """Add ``ampkit verify``."""
    parser = subparsers.add_parser(
        "verify", help="check each precision mode works on this machine", description=__doc__
    )
    add_flag(parser, "device", default=None, help="torch device (default: cuda if available, else cpu)")
    add_flag(
        parser,
        "modes",
        default=None,
        metavar="M1,M2",
        help="comma-separated modes or aliases to check (default: all)",
    )
    add_flag(
        parser,
        "fp8-emulate",
        action="store_true",
        help="check fp8 modes with emulated fp8 numerics where fp8 hardware is missing (slow)",
    )
    add_flag(
        parser,
        "compile",
        action="store_true",
        help="run every check on the model under torch.compile (inductor); slow: one compile per check",
    )
    parser.add_argument("--json", action="store_true", help="print only the results as JSON")
    parser.set_defaults(func=run)


def parse_modes(text: str | None) -> list[str] | None:
    """``--modes`` as canonical modes (``None``: all); an empty list or unknown spelling is a UsageError."""
    from ..errors import UsageError
    from ..precision import canonical_mode

    if text is None:
        return None
    names = [m.strip() for m in text.split(",") if m.strip()]
    if not names:
        raise UsageError(
            f"--modes {text!r}: no mode given; valid: comma-separated modes, e.g. fp32,bf16-mixed"
        )
    return list(dict.fromkeys(canonical_mode(m) for m in names))


def render(reports: list[Any], how: str | None = None) -> None:
    """The pass/fail table: one row per mode, one column per check, fit warnings as notes."""
    from rich.console import Console
    from rich.table import Table

    from ..termtext import markup, visible

    table = Table(title="ampkit verify" + (f" under {how}" if how else ""), title_justify="left")
    for column in (
        "mode",
        "result",
        "dtypes compute/params/norm",
        "scaler (planted inf)",
        "loss (10 steps)",
        "note",
    ):
        table.add_column(column, overflow="fold")
    notes: list[str] = []
    for rep in reports:
        details = []  # a check's detail may quote an exception's text: shown literally
        for name in ("dtypes", "scaler", "loss"):
            check = rep.check(name)
            details.append("-" if check is None else f"{_MARK[check.passed]}: {markup(check.detail)}")
        marks = []
        for note in rep.notes:  # long fit warnings go under the table, referenced by number
            notes.append(note)
            marks.append(f"[{len(notes)}]")
        table.add_row(markup(rep.mode), _STATUS[rep.status], *details, " ".join(marks))
    console = Console()
    console.print(table)
    for number, note in enumerate(notes, 1):
        console.print(f"[{number}] {visible(note)}", markup=False, highlight=False)
    failed = [r.mode for r in reports if r.status == "fail"]
    console.print(
        f"[bold red]FAILED: {markup(', '.join(failed))}[/bold red]"
        if failed
        else "[green]all runnable modes pass[/green]"
    )


def run(args: argparse.Namespace) -> int:
    """Run the checks, print the table (or JSON); exit code 1 when any mode fails."""
    from ..verify import verify_modes
    from .checks import check_device

    device = check_device(args.device)
    modes = parse_modes(args.modes)
    reports = verify_modes(modes, device, fp8_emulate=args.fp8_emulate, compile=args.compile)
    if args.json:
        print(json.dumps([asdict(r) for r in reports], indent=2))
    else:
        render(reports, "torch.compile (inductor)" if args.compile else None)
    return 1 if any(r.status == "fail" for r in reports) else 0
