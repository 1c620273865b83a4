"""``ampkit compare`` on hostile study input found by the QA pass: refused up front, never run.

Rows (tests/cli_cases.py): a placeholder width that would allocate gigabytes
(``{seed:>2000000000}``) in a COMMAND, an env value or the amp flags; an experiment name or env
name with a trailing newline (``$`` matched before it); a metric with two directions; a batch
larger than the task's training set from the flag or a study file (an arm used to start and
fail); a FIFO, symlink or socket where an arm opens its files (``open(..., "w")`` hung on the
FIFO); a second compare into an ``--out`` another one holds. Each: one line, exit 2, nothing
changed, no arm started. The ``--parse`` rows check that a catastrophic regex runs where Ctrl-C
and SIGTERM reach it (the main thread), not in the pipe reader thread that fed the line.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cli_cases import Case, params, run_case
from test_hostile_compare import BASE, CFG, CMD_TOML, CMDB, PY, study, toml

from ampkit.engine.runlock import RunLock
from ampkit.study.arm_output import SCAN_CHARS, OutputScanner, compile_patterns

HELD: list[RunLock] = []
"""Locks the rows' setups hold for the length of their test."""


@pytest.fixture(autouse=True)
def _release_locks() -> Iterator[None]:
    yield
    while HELD:
        HELD.pop().close()


def held(tmp: Path) -> None:
    """Another compare (this process, through its own open file) holds ``{tmp}/study``."""
    lock = RunLock(tmp / "study")
    lock.acquire()
    HELD.append(lock)


def in_arms(name: str, make: Callable[[Path], None]) -> Callable[[Path], None]:
    """``{tmp}-x/study/arms/<name>`` made by ``make`` (beside the test's folder: a FIFO inside it
    would block the row's snapshot, which reads every file)."""

    def setup(tmp: Path) -> None:
        where = Path(f"{tmp}-x/study/arms")
        where.mkdir(parents=True, exist_ok=True)
        make(where / name)

    return setup


def fifo(path: Path) -> None:
    os.mkfifo(path)


def symlink(path: Path) -> None:
    path.parent.joinpath("victim").write_text("keep me\n")
    path.symlink_to(path.parent / "victim")


def unix_socket(path: Path) -> None:
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(path))
    sock.close()


OUTX = [a if a != "{tmp}/study" else "{tmp}-x/study" for a in BASE]
W = "{{seed:>2000000000}}"  # argv is formatted with tmp=..., so braces are doubled

# fmt: off
CASES = [
    # L2: format widths and precisions bounded before anything is formatted
    Case("cmd-width-huge", [*CMDB, "echo", W], needle="width or precision 2000000000"),
    Case("cmd-precision-huge", [*CMDB, "echo", "{{out:.99999}}"], needle="width or precision 99999"),
    Case("cmd-width-5000-digits", [*CMDB, "echo", "{{seed:" + "9" * 5000 + "}}"], needle="999999999999..."),
    Case("cmd-nested-spec", [*CMDB, "echo", "{{seed:>{{seed}}}}"], needle="a placeholder inside a format spec"),
    Case("amp-flags-width-huge", [*CMDB[:-1], "--amp-flags", "--x {{amp_dtype:>1500000000}}", "--", "echo"],
         needle="--amp-flags: width or precision 1500000000"),
    Case("toml-command-width", CFG, needle="width or precision 2000000000",
         setup=study('command = ["echo", "{seed:>2000000000}"]')),
    Case("toml-env-width", CFG, needle="env X: width or precision 1500000000",
         setup=study(f'{CMD_TOML}\nenv = {{ X = "{{out:>1500000000}}" }}')),
    Case("toml-amp-flags-width", CFG, needle="amp_flags: width or precision 1500000000",
         setup=study(f'{CMD_TOML}\namp_flags = "{{amp_dtype:>1500000000}}"')),
    # L3: names matched whole (a trailing newline no longer slips past `$`)
    Case("toml-name-newline", CFG, needle=r"experiment name 'abc\n'",
         setup=toml('[experiments."abc\\n"]\ntask = "digits"\nsteps = 3\n')),
    Case("toml-name-tab", CFG, needle=r"experiment name 'a\tb'", setup=toml('[experiments."a\\tb"]\nsteps = 3\n')),
    Case("toml-env-name-newline", CFG, needle="not a variable name",
         setup=study(f'{CMD_TOML}\nenv = {{ "A\\n" = "1" }}')),
    # L4: one direction at most
    Case("toml-metric-two-directions", CFG, needle="'acc:max:min': more than one ':'",
         setup=study(f'{CMD_TOML}\nmetric = "acc:max:min"')),
    Case("metric-flag-two-directions", [*CMDB[:-1], "--metric", "loss:min:max", "--", PY, "-c", "1"],
         needle="--metric 'loss:min:max': more than one ':'"),
    # L1: the batch bound train enforces, now before any arm starts
    Case("batch-size-beyond-task", [*BASE, "--batch-size", "5000"],
         needle="--batch-size 5000: larger than the"),
    Case("toml-batch-size-int64-max", CFG, needle=f"experiment 'a': batch_size {2**63 - 1}: larger than the",
         setup=study(f"overrides = {{ batch_size = {2**63 - 1}, size = \"small\", device = \"cpu\" }}")),
    # L7: what an arm would open in out/arms
    Case("arms-log-fifo", OUTX, needle="fp32-seed0.log is a FIFO", setup=in_arms("fp32-seed0.log", fifo)),
    Case("arms-spec-fifo", OUTX, needle="fp32-seed0.spec.json is a FIFO",
         setup=in_arms("fp32-seed0.spec.json", fifo)),
    Case("arms-log-symlink", OUTX, needle="fp32-seed0.log is a symlink", setup=in_arms("fp32-seed0.log", symlink)),
    Case("arms-log-socket", OUTX, needle="is a socket", setup=in_arms("fp32-seed0.log", unix_socket)),
    Case("arms-is-fifo", OUTX, needle="arms is a FIFO, not a folder",
         setup=lambda tmp: (Path(f"{tmp}-x/study").mkdir(parents=True), os.mkfifo(f"{tmp}-x/study/arms"))),
    # L6: one compare per --out
    Case("out-held-by-another-compare", BASE, needle="is in use by ampkit pid", setup=held),
]
# fmt: on


@pytest.mark.parametrize("case", params(CASES))
def test_refused_before_any_arm(
    case: Case, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    beside = Path(f"{tmp_path}-x")
    listing = lambda: sorted(str(p) for p in beside.rglob("*")) if beside.exists() else []  # noqa: E731
    if case.setup is not None and "-x" in " ".join(case.argv):
        case.setup(tmp_path)
        case = Case(case.id, case.argv, case.code, case.needle, None, case.lines, case.env)
    before = listing()
    run_case(case, tmp_path, capsys, monkeypatch)
    assert listing() == before  # nothing created beside the test folder either
    if (beside / "study/arms/victim").exists():
        assert (beside / "study/arms/victim").read_text() == "keep me\n"


def test_lock_released_after_refusal_and_held_file_unchanged(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The refused second compare leaves the holder's lock file as it was, and holds nothing after."""
    held(tmp_path)
    holder = (tmp_path / "study/.ampkit.lock").read_text()
    run_case(Case("held", BASE, needle="in use"), tmp_path, capsys, monkeypatch)
    assert (tmp_path / "study/.ampkit.lock").read_text() == holder
    HELD.pop().close()
    lock = RunLock(tmp_path / "study")  # free again: the refused run took no lock of its own
    lock.acquire()
    lock.close()


CATASTROPHIC = r"(?P<loss>(a+)+)b"


def test_parse_regex_runs_in_the_reading_thread_not_the_pipe_reader() -> None:
    scanner = OutputScanner(compile_patterns([CATASTROPHIC], "--parse "))
    fed = threading.Thread(target=scanner.feed, args=("a" * 40 + "!\n", "stderr", 1.0))
    started = time.monotonic()
    fed.start()
    fed.join(timeout=5)
    assert not fed.is_alive() and time.monotonic() - started < 1  # the pipe reader only queued it
    assert list(scanner.stderr) == ["a" * 40 + "!"]  # the stderr tail is kept as the line arrives


def test_catastrophic_parse_regex_is_interrupted_by_a_signal() -> None:
    """Reading the records scans in the main thread: a signal's KeyboardInterrupt stops the match."""
    scanner = OutputScanner(compile_patterns([CATASTROPHIC], "--parse "))
    scanner.feed("a" * 40 + "!\n", "stdout", 1.0)

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGALRM, interrupt)
    signal.setitimer(signal.ITIMER_REAL, 0.3)
    started = time.monotonic()
    try:
        with pytest.raises(KeyboardInterrupt):
            scanner.latest_loss()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    assert time.monotonic() - started < 3


@pytest.mark.parametrize(
    ("line", "parsed"),
    [
        ("step 3 loss 0.5", [{"step": 3, "values": {"loss": 0.5}}]),
        ("x" * (SCAN_CHARS - 20) + " step 3 loss 0.5", [{"step": 3, "values": {"loss": 0.5}}]),
        ("x" * SCAN_CHARS + " step 3 loss 0.5", []),  # past the scanned prefix (documented bound)
    ],
)
def test_parse_scans_a_bounded_prefix(line: str, parsed: list[dict[str, object]]) -> None:
    scanner = OutputScanner(compile_patterns([r"step (?P<step>\d+) loss (?P<loss>\S+)"], "--parse "))
    scanner.feed(line + "\n", "stdout", 2.0)
    assert [{"step": r["step"], "values": r["values"]} for r in scanner.records] == parsed
