"""stdout's reader gone (``ampkit inspect DIR | head -1``): no "error: Broken pipe" line, exit 1.

Each row runs the command in-process with ``sys.stdout`` writing into a pipe whose read end is
closed, as after ``| head -1`` has read its line. The command ends quietly, the way Python's
docs recommend and rich's console does itself: stdout pointed at ``/dev/null`` (so no flush at
exit fails again), no message on stderr, exit status 1.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from cli_cases import Case, params, run_case
from test_hostile_data import dataset

from ampkit.cli import main, stdout_closed


@contextlib.contextmanager
def closed_stdout(monkeypatch: pytest.MonkeyPatch) -> Iterator[int]:
    """``sys.stdout`` on a pipe nobody reads any more; yields its descriptor. Installed inside the
    test body: pytest puts capsys's own stdout back at the start of each test phase."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    stream = os.fdopen(write_end, "w")
    with monkeypatch.context() as patch:
        patch.setattr(sys, "stdout", stream)
        yield write_end
    with contextlib.suppress(OSError):
        stream.close()


def sources(tmp: Path) -> None:
    (tmp / "src").mkdir()
    for i in range(3):
        np.save(tmp / "src" / f"s{i}.npy", np.arange(8, dtype=np.float32) + i)


def big_dataset(tmp: Path) -> None:
    dataset(tmp)


CASES = [
    Case("inspect", ["inspect", "--shards", "ds"], 1, setup=big_dataset, lines=0),
    Case("inspect-json", ["inspect", "--json", "ds"], 1, setup=big_dataset, lines=0),
    Case("verify-shards", ["verify-shards", "--quiet", "ds"], 1, setup=big_dataset, lines=0),
    Case("convert", ["convert", "src", "--out", "out", "--quiet"], 1, setup=sources, lines=0),
]


@pytest.mark.parametrize("case", params(CASES))
def test_closed_stdout_ends_quietly(
    case: Case, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    with closed_stdout(monkeypatch) as fd:
        err = run_case(case, tmp_path, capsys, monkeypatch)
        assert os.path.samefile(f"/proc/self/fd/{fd}", os.devnull)  # no later flush can fail
    assert "Broken pipe" not in err and err.strip() == "", err


def test_help_into_closed_pipe(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    with closed_stdout(monkeypatch):
        try:
            code = main(["--help"])
        except SystemExit as exc:  # argparse exits after the help
            code = exc.code if isinstance(exc.code, int) else 1
    assert code == 1  # the help could not be shown: quietly, as for every command
    assert capsys.readouterr().err == ""


def test_other_broken_pipes_are_still_errors(capsys: pytest.CaptureFixture[str]) -> None:
    """Only stdout's own broken pipe is quiet: stdout still readable means the EPIPE came from elsewhere."""
    assert not stdout_closed()  # pytest's capture: not a pipe without reader
