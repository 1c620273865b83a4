"""``ampkit inspect DIR``: what a shard folder holds: counts, stored dtypes, storage ratios, errors.

Totals are computed from the shard list and the sample JSONs (the numbers in manifest.json are
not trusted). Without manifest.json the shards' index members stand in. Exit 2 with one line
when DIR is no shard folder (missing, a file, empty, unrelated) or cannot be summarised (a
malformed manifest, a missing or truncated shard, a sample JSON that does not fit its data):
``ampkit verify-shards DIR`` says exactly what is damaged. Exit 1 on an I/O error.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import Counter, defaultdict
from typing import Any


def register(subparsers: Any) -> None:
    """Add ``ampkit inspect``."""
    p = subparsers.add_parser(
        "inspect", help="summarise a shard folder written by convert", description=__doc__
    )
    p.add_argument("directory", metavar="DIR", help="folder written by ampkit convert")
    p.add_argument("--shards", action="store_true", help="also list every shard")
    p.add_argument("--json", action="store_true", help="print the summary as JSON instead of tables")
    p.set_defaults(func=run)


def summarize(manifest: dict[str, Any], metas: list[dict[str, Any]]) -> dict[str, Any]:
    """Manifest totals plus per-stored-dtype error figures and choice reasons."""
    per: dict[str, dict[str, Any]] = defaultdict(lambda: {"count": 0, "max_abs": 0.0, "max_rel": 0.0})
    reasons: Counter[str] = Counter()
    for m in metas:
        row = per[m["dtype"]]
        row["count"] += 1
        row["max_abs"] = max(row["max_abs"], float(m["error"]["max_abs"]))
        row["max_rel"] = max(row["max_rel"], float(m["error"]["max_rel"]))
        # group reasons with their numbers blanked: "integer values in [N, N]: int16 is exact"
        reasons[re.sub(r"(?<![\w.])-?\d[\w.+-]*", "N", m["choice"]["reason"])] += 1
    keys = (
        "total_samples",
        "source_bytes",
        "stored_bytes",
        "payload_bytes",
        "storage_ratio_vs_float32",
        "storage_ratio_vs_source",
        "dtype_counts",
        "worst_error",
        "overflow_clipped",
        "nonfinite",
    )
    out = {k: manifest.get(k) for k in keys}
    out["nonfinite"] = out["nonfinite"] or 0  # NaN/Inf kept by --on-nonfinite keep
    out["shards"] = len(manifest["shards"])
    out["per_dtype"] = dict(sorted(per.items()))
    out["reasons"] = dict(reasons.most_common())
    return out


def run(args: argparse.Namespace) -> int:
    """Print the summary tables (or JSON)."""
    from pathlib import Path

    from rich.console import Console
    from rich.table import Table

    from ..data.folder import open_folder, read_for_summary
    from ..data.summary import build_manifest
    from ..termtext import cells, markup, visible

    directory = Path(args.directory)
    try:
        manifest, metas, note = read_for_summary(open_folder(directory))
    except OSError as err:
        print(
            f"ampkit inspect: error: cannot read {visible(err.filename or directory)}: {err.strerror or err}",
            file=sys.stderr,
        )
        return 1
    manifest = build_manifest(manifest["shards"], metas)  # totals from the shards, not the manifest's word
    summary = summarize(manifest, metas)
    if args.json:
        print(json.dumps(summary, indent=1, sort_keys=True))
        return 0
    console = Console()
    # the folder's name and every string from its JSON are shown literally (markup, escapes)
    table = Table(title=f"ampkit inspect {markup(directory)} {markup(note)}", title_justify="left")
    table.add_column("what")
    table.add_column("value", justify="right")
    w = summary["worst_error"]
    rows = [
        ("samples", f"{summary['total_samples']}"),
        ("shards", f"{summary['shards']}"),
        (
            "stored",
            f"{summary['stored_bytes'] / 1e6:,.2f} MB ({summary['payload_bytes'] / 1e6:,.2f} MB sample data)",
        ),
        ("source", f"{summary['source_bytes'] / 1e6:,.2f} MB"),
        ("ratio vs float32", f"{summary['storage_ratio_vs_float32']:.4f}"),
        ("ratio vs source", f"{summary['storage_ratio_vs_source']:.4f}"),
        ("worst max abs error", f"{w['max_abs']:g} (key {w['max_abs_key']})"),
        ("worst max rel error", f"{w['max_rel']:g} (key {w['max_rel_key']})"),
        ("values clipped", f"{summary['overflow_clipped']}"),
        ("NaN/Inf kept", f"{summary['nonfinite']}"),
    ]
    for row in rows:
        table.add_row(*cells(*row))
    console.print(table)
    per = Table(title="per stored dtype", title_justify="left")
    for col in ("dtype", "samples", "max abs error", "max rel error"):
        per.add_column(col, justify="right" if col != "dtype" else "left")
    for dtype, row in summary["per_dtype"].items():
        per.add_row(*cells(dtype, row["count"], f"{row['max_abs']:g}", f"{row['max_rel']:g}"))
    console.print(per)
    why = Table(title="why each dtype was chosen", title_justify="left")
    why.add_column("reason")
    why.add_column("samples", justify="right")
    for reason, count in summary["reasons"].items():
        why.add_row(*cells(reason, count))
    console.print(why)
    if args.shards:
        shards = Table(title="shards", title_justify="left")
        for col in ("name", "samples", "MB", "sha256"):
            shards.add_column(col)
        for s in manifest["shards"]:
            shards.add_row(*cells(s["name"], s["count"], f"{s['bytes'] / 1e6:,.2f}", s["sha256"][:16]))
        console.print(shards)
    return 0
