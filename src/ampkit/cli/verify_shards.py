"""``ampkit verify-shards DIR``: check every sample's checksum and every shard's sha256, decode every sample.

Every sample's bytes are checked against the XXH3 its index entry records (CRC-32C or sha256 in
shards written by earlier versions) and every shard file against the sha256 the manifest records.

Exit codes:
  0  every listed shard is present, its size and sha256 match, every sample's checksum matches
     and every sample decodes;
  1  DIR is a shard folder and something in it is damaged: a missing, unlisted, truncated or
     changed shard, a sample whose bytes, JSON or size are wrong, an unfinished shard of an
     interrupted convert, or a manifest that is missing or malformed (each shard is then checked
     against its own index). One line per problem on stderr, naming the shard (and the sample
     key when the damage lies in a sample), then one summary line "N of M samples failed, ...";
     an I/O error reading DIR is also exit 1, one line;
  2  there is nothing to verify: DIR is missing, a file, empty, or holds neither a valid
     manifest.json nor any shard-NNNNNN.tar (or the flags are wrong): one line.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

_MAX_LINES = 50
"""Problems printed one per line; the rest are counted."""


def register(subparsers: Any) -> None:
    """Add ``ampkit verify-shards``."""
    p = subparsers.add_parser(
        "verify-shards",
        help="check sample checksums and shard hashes, decode every sample",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("directory", metavar="DIR", help="folder written by ampkit convert")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Verify and report."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from ..data.folder import open_folder
    from ..data.verify import verify_shards
    from ..termtext import visible  # a path or a quoted piece of sample JSON: control characters shown

    try:
        folder = open_folder(args.directory)  # refuses a path that is no shard folder: exit 2
        total = len(folder.manifest["shards"]) if folder.manifest else len(folder.shard_files)
        columns = (TextColumn("verify"), BarColumn(), MofNCompleteColumn(), TextColumn("shards"))
        with Progress(*columns, console=Console(stderr=True), disable=args.quiet, transient=True) as bar:
            task = bar.add_task("verify", total=total)
            report = verify_shards(folder, on_shard=lambda _name: bar.advance(task))
    except OSError as err:
        print(
            f"ampkit verify-shards: error: cannot read {visible(err.filename or args.directory)}: "
            f"{err.strerror or err}",
            file=sys.stderr,
        )
        return 1
    for problem in report.problems[:_MAX_LINES]:
        print(f"ampkit verify-shards: BAD {visible(problem)}", file=sys.stderr)
    if len(report.problems) > _MAX_LINES:
        print(
            f"ampkit verify-shards: ... and {len(report.problems) - _MAX_LINES} more problems",
            file=sys.stderr,
        )
    print(visible(report.summary(args.directory)))
    return 0 if report.ok else 1
