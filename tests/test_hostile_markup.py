"""Rich markup and terminal escapes in paths, sample JSON and study text are shown, never obeyed.

A folder named ``a[/b]`` or a sample whose ``choice.reason`` holds ``[/x]`` made rich raise
``MarkupError`` (a traceback); ``[link=...]`` rendered a hyperlink the user never wrote; ESC/OSC
sequences (clear screen, window title) reached the terminal. Every print site goes through
:mod:`ampkit.termtext`: the CLI rows run the commands in-process on hostile folders and JSON,
the render rows feed each table printer (inspect, compare's table and lines, verify, doctor,
plan, analyze, the study's progress columns) hostile strings and read what comes out.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cli_cases import Case, run_case
from test_hostile_data import dataset, forged_sample

from ampkit.cli import main
from ampkit.termtext import markup, visible

#: Markup that rich would parse (a stray close tag, a hyperlink, a style) and escapes a terminal obeys.
HOSTILE = "[/x] [link=http://evil.example]click[/link] [blink]b[/blink] \x1b]0;TITLE\x07\x1b[2J\u202e"
#: What the terminal must show instead: the same text, its control characters as escapes.
SHOWN = r"[/x] [link=http://evil.example]click[/link] [blink]b[/blink] \x1b]0;TITLE\x07\x1b[2J\u202e"
RAW = ("\x1b", "\x07", "\u202e")


def _clean(text: str) -> None:
    """No control character of the hostile text reached the output."""
    for char in RAW:
        assert char not in text, f"{char!r} reached the terminal:\n{text!r}"


def reason(text: str) -> Callable[[Path], None]:
    """A shard folder ``{tmp}/ds`` whose sample 0 says ``text`` as the reason for its dtype."""

    def change(meta: dict[str, Any]) -> None:
        meta["choice"]["reason"] = text

    return forged_sample(change)


def folder(name: str) -> Callable[[Path], None]:
    def setup(tmp: Path) -> None:
        dataset(tmp, name)

    return setup


# (row, text stdout must hold); every row also checks that no raw control character came out
ROWS = [
    (Case("inspect-reason-close-tag", ["inspect", "ds"], 0, setup=reason("[/x] closing"), lines=0),
     "[/x] closing"),
    (Case("inspect-reason-link", ["inspect", "ds"], 0, setup=reason("[link=http://e.example]c[/link]"),
          lines=0), "[link=http://e.example]c[/link]"),
    # inspect groups reasons with their numbers blanked ("0;TITLE" -> "N;TITLE")
    (Case("inspect-reason-escapes", ["inspect", "ds"], 0, setup=reason(HOSTILE), lines=0),
     SHOWN.replace("]0;", "]N;").replace("[2J", "[N")),
    (Case("inspect-folder-close-tag", ["inspect", "a[/b]"], 0, setup=folder("a[/b]"), lines=0), "a[/b]"),
    (Case("inspect-folder-shards", ["inspect", "--shards", "a[/b]"], 0, setup=folder("a[/b]"), lines=0),
     "a[/b]"),
    (Case("inspect-folder-escape", ["inspect", "e\x1b[31mred"], 0, setup=folder("e\x1b[31mred"), lines=0),
     r"e\x1b[31mred"),
    (Case("verify-shards-folder-escape", ["verify-shards", "--quiet", "e\x1b]0;T\x07"], 0,
          setup=folder("e\x1b]0;T\x07"), lines=0), r"e\x1b]0;T\x07"),
    (Case("inspect-missing-folder-escape", ["inspect", "nope\x1b[2J[/b]"], 2, needle=r"nope\x1b[2J[/b]"), ""),
    (Case("inspect-not-a-folder-markup", ["inspect", "[/x]"], 2, needle="[/x]"), ""),
]  # fmt: skip


@pytest.mark.parametrize(("case", "shown"), [pytest.param(c, s, id=c.id) for c, s in ROWS])
def test_cli_prints_hostile_text_literally(
    case: Case,
    shown: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("COLUMNS", "400")  # rich folds narrow tables; the text must come out whole
    err = run_case(case, tmp_path, capsys, monkeypatch)
    _clean(err)
    assert main([a.format(tmp=tmp_path) for a in case.argv]) == case.code  # again, reading stdout
    out = capsys.readouterr().out
    _clean(out)
    assert shown in out, out


def test_compare_out_with_markup_prints_its_last_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The whole study ran, then ``wrote ... to c[/f]/`` raised MarkupError: now it is the last line."""
    monkeypatch.chdir(tmp_path)
    argv = ["compare", "--device", "cpu", "--size", "small", "--precisions", "fp32", "--steps", "2"]
    code = main([*argv, "--warmup-steps", "0", "--out", "c[/f]\x1b[2J"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "Traceback" not in err and "MarkupError" not in err
    assert (tmp_path / "c[/f]\x1b[2J" / "results.json").is_file()
    assert not (tmp_path / "c[/f]\x1b[2J" / ".ampkit.lock").exists()  # the study's lock is gone
    last = [line for line in out.splitlines() if line.strip()][-1]
    assert last.startswith("wrote results.json") and last.endswith(r" to c[/f]\x1b[2J/"), last
    _clean(out)


def _console(buf: io.StringIO) -> Any:
    from rich.console import Console

    return Console(file=buf, width=400, color_system=None)


def _study(text: str) -> dict[str, Any]:
    failed = {"mode": "fp32", "status": "failed", "reason": text, "stderr_tail": [text]}
    measured = {
        "mode": "bf16-mixed",
        "status": "measured",
        "summary": {"metric_name": text, "item_unit": text},
    }
    return {"task": text, "experiment": text, "settings": {"compile": "off"}, "kind": "command",
            "arms": [failed, measured]}  # fmt: skip


def render_compare_table(text: str) -> str:
    from ampkit.study.report import print_table

    buf = io.StringIO()
    print_table(_study(text), _console(buf))
    return buf.getvalue()


def render_progress(text: str) -> str:
    from rich.progress import Progress

    from ampkit.study.runner import _progress

    buf = io.StringIO()
    progress: Progress = _progress(_console(buf))
    with progress:
        progress.add_task(text, total=2, loss=text)
        progress.refresh()
    return buf.getvalue()


def render_verify(text: str, capsys: pytest.CaptureFixture[str]) -> str:
    from ampkit.cli.verify import render
    from ampkit.verify.checks import Check
    from ampkit.verify.runner import ModeReport

    render([ModeReport(text, "fail", (Check("dtypes", False, text),), (text,))])
    return capsys.readouterr().out


def render_doctor(text: str, capsys: pytest.CaptureFixture[str]) -> str:
    from ampkit.cli.doctor import render
    from ampkit.hardware import doctor_report

    report = doctor_report("cpu", budget_s=0)
    report["devices"][0]["name"] = text
    report["recommendation"]["reason"] = text
    report["recommendation"]["facts"] = [text]
    next(iter(report["support"].values()))["why"] = text
    render(report)
    return capsys.readouterr().out


def render_plan(text: str, capsys: pytest.CaptureFixture[str]) -> str:
    from ampkit.cli.plan import render

    mode = {"precision": "fp32", "max_batch": 8, "peak_bytes": 2**20, "samples_per_s": 10.0, "items_per_s": 10.0,
            "item_unit": "samples", "accumulation": None, "status": "failed", "reason": text, "warnings": []}  # fmt: skip
    render({"budget_bytes": 0, "task": text, "size": "small", "device": "cpu", "memory_measure": text,
            "budget_source": text, "modes": [mode], "global_batch": None})  # fmt: skip
    return capsys.readouterr().out


def render_analyze(text: str) -> str:
    from ampkit.cli.analyze import render

    layer = {"name": text, "type": text, "act": {}, "grad": {}, "issues": [text]}
    ranges = {"layers": [layer], "recommendation": "fp16-mixed", "loss_scale": None, "reason": text}
    report = {"task": text, "steps": 1, "mode": "fp16-mixed", "ranges": ranges, "drift": [],
              "flop_share": {"share": 0.5, "by_dtype": {text: 1.0}}}  # fmt: skip
    buf = io.StringIO()
    render(report, _console(buf))
    return buf.getvalue()


RENDERS: list[tuple[str, Callable[..., str], bool]] = [
    ("compare-table", render_compare_table, False),
    ("compare-progress", render_progress, False),
    ("verify-table", render_verify, True),
    ("doctor-tables", render_doctor, True),
    ("plan-table", render_plan, True),
    ("analyze-tables", render_analyze, False),
]


@pytest.mark.parametrize(("render", "needs_capsys"), [pytest.param(r, c, id=i) for i, r, c in RENDERS])
def test_printers_show_hostile_text_literally(
    render: Callable[..., str],
    needs_capsys: bool,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("COLUMNS", "400")
    out = render(HOSTILE, capsys) if needs_capsys else render(HOSTILE)
    _clean(out)
    assert SHOWN in out, out


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("plain é 漢 🙂", "plain é 漢 🙂"),
        ("a\nb\tc\r", r"a\nb\tc\r"),
        ("\x00\x7f\x9b", r"\x00\x7f\x9b"),
        ("\u2028\u2066x\u2069", r"\u2028\u2066x\u2069"),
        ("bad\udcffbyte", r"bad\xffbyte"),
    ],
)
def test_visible_escapes_controls_only(text: str, shown: str) -> None:
    assert visible(text) == shown
    assert re.search(r"[\x00-\x1f\x7f-\x9f]", visible(text)) is None


def test_markup_round_trips_through_rich() -> None:
    from rich.text import Text

    for text in ("[/x]", "[bold]b[/bold]", "trailing\\", "[link=u]x[/link]", "a[1]b", "\\[b]"):
        assert Text.from_markup(f"[bold]{markup(text)}[/bold]").plain == text
