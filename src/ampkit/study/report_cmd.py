"""report.md's section of a command study: each arm's exact command, its environment, exit code and
the precision its script really ran (with the evidence), so every row can be rerun by hand."""

from __future__ import annotations

import shlex
from typing import Any


def command_lines(study: dict[str, Any]) -> list[str]:
    """Markdown lines of the "Commands" section (none for a task study)."""
    settings = study["settings"]
    if settings.get("command") is None:
        return []
    lines = [
        "## Commands",
        "",
        f"Command: `{shlex.join(settings['command'])}`"
        + (f"; --parse {', '.join(repr(p) for p in settings['parse'])}" if settings.get("parse") else "")
        + (f"; --metric {settings['metric']}" if settings.get("metric") else ""),
        "",
        "| precision | seed | exit | ran (script's own report) | environment set by the study | command run |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for arm in study["arms"]:
        for run in arm.get("runs", []):
            if "argv" not in run:
                continue
            check = run.get("precision_check") or {}
            ran = check.get("ran") or check.get("status", "-")
            if check.get("flagged"):
                ran = f"**{ran} (flagged)**"
            env = " ".join(f"{k}={v}" for k, v in run.get("env", {}).items())
            cmd = shlex.join(run["argv"]).replace("|", "/")
            lines.append(
                f"| {arm['mode']} | {run.get('seed')} | {run.get('exit_code')} | {ran} | `{env}` | `{cmd}` |"
            )
    lines.append("")
    notes = [
        f"- {arm['mode']} seed {run.get('seed')}: {run['precision_check']['status']}: {run['precision_check']['evidence']}"
        for arm in study["arms"]
        for run in arm.get("runs", [])
        if run.get("precision_check")
    ]
    if notes:
        lines += ["How each arm's precision was checked:", "", *notes, ""]
    return lines
