"""``ampkit verify-shards DIR``: check the sha256 of every shard and decode every sample.

Exit 0 when all is well; exit 1 with one line per problem naming the shard (and the sample key
when the damage lies in a sample's bytes).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any


def register(subparsers: Any) -> None:
    """Add ``ampkit verify-shards``."""
    p = subparsers.add_parser(
        "verify-shards", help="check shard hashes and decode every sample", description=__doc__
    )
    p.add_argument("directory", metavar="DIR", help="folder written by ampkit convert")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Verify and report."""
    from pathlib import Path

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from ..data.format import load_manifest
    from ..data.verify import verify_shards
    from ..errors import UsageError

    directory = Path(args.directory)
    if not directory.is_dir():
        raise UsageError(f"{directory}: no such folder; pass a folder written by ampkit convert")
    try:
        total = len(load_manifest(directory)["shards"])
    except (OSError, ValueError, KeyError):
        total = None
    columns = (TextColumn("verify"), BarColumn(), MofNCompleteColumn(), TextColumn("shards"))
    with Progress(*columns, console=Console(stderr=True), disable=args.quiet, transient=True) as bar:
        task = bar.add_task("verify", total=total)
        report = verify_shards(directory, on_shard=lambda _name: bar.advance(task))
    for problem in report.problems:
        print(f"ampkit verify-shards: BAD {problem}", file=sys.stderr)
    if not report.ok:
        print(f"{len(report.problems)} problems in {directory} ({report.samples} samples decoded fine)")
        return 1
    print(
        f"ok: {report.shards} shards, {report.samples} samples in {directory} match the manifest and decode"
    )
    return 0
