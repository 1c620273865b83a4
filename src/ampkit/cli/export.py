"""``ampkit export``: print another framework's equivalent of an ampkit precision (or say it has none).

With ``--merge-into ds_config.json`` (DeepSpeed) the precision blocks are merged into the user's
own config instead: everything of theirs is kept, a contradictory block is refused in one line.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ..integrations import DEVICES, FORMATS, FRAMEWORKS
from .parser import add_flag, path_arg


def register(subparsers: Any) -> None:
    """Add ``ampkit export``."""
    parser = subparsers.add_parser(
        "export",
        help="print what Accelerate/Lightning/MMEngine/DeepSpeed/Transformers/Keras call a precision",
        description=__doc__,
    )
    parser.add_argument(
        "--to", dest="to", required=True, metavar="FRAMEWORK", help=f"one of: {', '.join(FRAMEWORKS)}"
    )
    parser.add_argument(
        "--precision", dest="precision", required=True, metavar="MODE", help="any ampkit precision spelling"
    )
    parser.add_argument(
        "--device",
        dest="device",
        default=None,
        metavar="DEVICE",
        help=f"the device the label (exact/approximate/none) is for: {', '.join(DEVICES)} "
        "(default: this machine's)",
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
        help="print only the framework's config (for redirecting into a file); notes, TF32 included, go to stderr",
    )
    add_flag(
        parser,
        "merge-into",
        type=path_arg,
        default=None,
        metavar="FILE",
        help="DeepSpeed: merge the precision blocks into this JSON config and print the result "
        "(keeps ZeRO, offload and your scaler settings; refuses a contradictory block)",
    )
    parser.add_argument(
        "--out",
        dest="out",
        type=path_arg,
        default=None,
        metavar="FILE",
        help="write the output to FILE (atomically; may be the --merge-into file) instead of stdout",
    )
    parser.set_defaults(func=run)


def _read_config(path: Path) -> Any:
    """The user's JSON config; UsageError naming what is wrong with the file (a folder, a FIFO or
    device, over 16 MiB, not UTF-8, not JSON, nested too deeply)."""
    from ..errors import UsageError
    from ..study.config_file import parse, read_text

    valid = "valid: an existing DeepSpeed JSON config file"
    text = read_text(path, "--merge-into", valid)
    try:
        return parse(text, json.loads, "--merge-into", path, valid)
    except json.JSONDecodeError as err:
        raise UsageError(
            f"--merge-into {path}: not JSON ({err.msg} at line {err.lineno} column {err.colno}); {valid}"
        ) from None


def run(args: argparse.Namespace) -> int:
    """Look the precision up in the framework's table; print it, or merge it into the user's config."""
    from ..errors import UsageError
    from ..fsutil import write_atomic
    from ..integrations import EXPORTERS, export, merge, render, to_yaml
    from .checks import check_out_file

    result = export(args.to, args.precision, args.device)
    if args.out is not None:
        check_out_file(Path(args.out))
    notes: tuple[str, ...] = ()
    if args.merge_into is not None:
        if result.framework != "deepspeed":
            raise UsageError(
                f"--merge-into: only DeepSpeed configs are merged, not {result.framework}'s; "
                "valid: --to deepspeed (or drop --merge-into)"
            )
        merged = merge(_read_config(args.merge_into), result, label=Path(args.merge_into).name)
        text = to_yaml(merged.config) if args.format == "yaml" else json.dumps(merged.config, indent=2) + "\n"
        notes = (*result.config_notes(), *merged.notes)
    else:
        if args.config_only and result.config is None:
            has = EXPORTERS[result.framework]().has(result.device)
            raise UsageError(
                f"{result.notes[0].rstrip('.')}; it has: {', '.join(has) or 'nothing'} on {result.device} "
                "(drop --config-only for the workaround)"
            )
        text = render(result, args.format, config_only=args.config_only)
        notes = result.config_notes() if args.config_only else ()
    if args.out is None:
        sys.stdout.write(text)
    else:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        write_atomic(args.out, text)
    for note in notes:
        print(f"ampkit export: note: {note}", file=sys.stderr)
    if args.out is not None:
        print(f"ampkit export: wrote {args.out}", file=sys.stderr)
    return 0
