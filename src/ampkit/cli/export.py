"""``ampkit export``: print another framework's equivalent of an ampkit precision (or say it has none)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ..integrations import FORMATS, FRAMEWORKS
from .parser import add_flag


def register(subparsers: Any) -> None:
    """Add ``ampkit export``."""
    parser = subparsers.add_parser(
        "export",
        help="print Accelerate/Lightning/MMEngine/DeepSpeed's equivalent of a precision",
        description=__doc__,
    )
    parser.add_argument(
        "--to", dest="to", required=True, metavar="FRAMEWORK", help=f"one of: {', '.join(FRAMEWORKS)}"
    )
    parser.add_argument(
        "--precision", dest="precision", required=True, metavar="MODE", help="any ampkit precision spelling"
    )
    parser.add_argument(
        "--format",
        dest="format",
        default="text",
        choices=FORMATS,
        help="text: config, Python and notes; json/yaml: the same as one record",
    )
    add_flag(
        parser,
        "config-only",
        action="store_true",
        help="print only the framework's config (for redirecting into a file); notes go to stderr",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Look the precision up in the framework's table and print it."""
    from ..errors import UsageError
    from ..integrations import EXPORTERS, export, render
    from ..precision import CANONICAL

    result = export(args.to, args.precision)
    if args.config_only:
        if result.config is None:
            table = EXPORTERS[result.framework].rows
            has = [mode for mode in CANONICAL if table.get(mode) and table[mode].equivalence != "none"]
            raise UsageError(
                f"{result.notes[0].rstrip('.')}; it has: {', '.join(has)} "
                "(drop --config-only for the workaround)"
            )
        for note in result.notes:
            print(f"ampkit export: note: {note}", file=sys.stderr)
    sys.stdout.write(render(result, args.format, config_only=args.config_only))
    return 0
