"""The precision study behind ``ampkit compare``: one task, several precisions, one fresh process per arm.

``run_study(experiment, out)`` runs the arms (:mod:`.runner`), summarises them over seeds
(:mod:`.summary`) and writes ``results.json``, ``results.csv``, ``report.md`` and the PNG
plots into ``out``. Each figure carries the method that produced it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console

from ..termtext import visible
from .arms import ArmPlan, plan_arms
from .config import Experiment, load_study, precisions_from_env
from .report import print_table, write_csv, write_json

__all__ = [
    "ArmPlan",
    "Experiment",
    "load_study",
    "plan_arms",
    "precisions_from_env",
    "run_study",
    "write_outputs",
]


def write_outputs(study: dict[str, Any], out: Path) -> list[Path]:
    """Summarise ``study`` and write every output file into ``out``; returns the paths written."""
    from ..fsutil import remove_stale_temps
    from .plots import write_plots
    from .report_md import write_markdown
    from .summary import summarize

    summarize(study)
    out.mkdir(parents=True, exist_ok=True)
    for name in ("results.json", "results.csv", "report.md"):
        remove_stale_temps(out, name)  # left by a writer killed mid-file
    plots = write_plots(study, out)
    write_json(study, out / "results.json")
    write_csv(study, out / "results.csv")
    write_markdown(study, out / "report.md", plots)
    return [out / "results.json", out / "results.csv", out / "report.md", *plots]


def _say(console: Console, line: str) -> None:
    console.print(visible(line), markup=False, highlight=False, soft_wrap=True)


def run_study(
    experiment: Experiment,
    out: Path,
    *,
    console: Console | None = None,
    checked: bool = False,
    trackers: Any = None,
) -> dict[str, Any]:
    """Run ``experiment``, write its outputs into ``out``, print the table; returns the study dict.

    Everything is checked before the first arm starts (``checked``: the caller already did, with
    :func:`ampkit.study.runner.require_runnable`). Failed arms are rows with their reason and
    stderr tail (``arm["status"] == "failed"``); after Ctrl-C the outputs hold what was measured
    and ``study["interrupted"]`` is true. ``trackers``: an
    :class:`ampkit.integrations.trackers.StudyTrackers` (``compare --log``), fed each arm run as it
    ends and given the outputs at the end.
    """
    from .runner import run_experiment

    console = console or Console()
    on_arm = trackers.on_arm if trackers is not None else None
    study = run_experiment(experiment, out, console=console, checked=checked, on_arm=on_arm)
    paths = write_outputs(study, out)
    print_table(study, console)
    # --out is the user's text: shown literally (a '[/x]' in it is no markup, an ESC no escape code)
    _say(console, f"wrote {', '.join(p.name for p in paths)} to {out}/")
    for line in trackers.finish(paths) if trackers is not None else []:
        _say(console, line)
    return study
