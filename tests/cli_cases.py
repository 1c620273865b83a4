"""Table-driven bad-input cases for the command line: argv -> exit code, one line, no traceback,
files unchanged. Each hostile-input test file builds rows of :class:`Case` and calls :func:`check`.

Cases run in-process through ``ampkit.cli.main`` (no interpreter start per row), so hundreds of rows
fit the CI budget; an exception escaping ``main`` fails the row, which is the "no traceback" rule.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from ampkit.cli import main


@dataclass(frozen=True)
class Case:
    """One row: the argv after ``ampkit``, the exit code and a fragment the one stderr line must hold."""

    id: str
    argv: Sequence[str]
    code: int = 2
    needle: str = ""
    setup: Callable[[Path], None] | None = None
    """Builds files under the test's folder before the run (argv may name them via ``{tmp}``)."""
    lines: int | None = 1
    """stderr line count (``None``: not checked, for environment faults that also log)."""
    env: dict[str, str] = field(default_factory=dict)


def outside(name: str, make: Callable[[Path], None]) -> Callable[[Path], None]:
    """A setup making ``{tmp}-x/<name>`` beside the test's folder: a dangling link, a loop or a FIFO
    cannot sit inside it (the row's snapshot of the folder reads every file)."""

    def setup(tmp: Path) -> None:
        where = Path(f"{tmp}-x")
        where.mkdir(exist_ok=True)
        make(where / name)

    return setup


def snapshot(root: Path) -> dict[str, str]:
    """Relative path -> sha256 of every file and ``"<dir>"`` for every folder under ``root``."""
    out: dict[str, str] = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        out[rel] = "<dir>" if path.is_dir() else hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def run_case(
    case: Case, tmp: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> str:
    """Run ``case`` under ``tmp`` and assert the contract; returns the stderr text."""
    for key, value in case.env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(tmp)
    if case.setup is not None:
        case.setup(tmp)
    before = snapshot(tmp)
    capsys.readouterr()
    try:
        code = main([a.format(tmp=tmp) for a in case.argv])
    except SystemExit as exc:  # argparse errors exit through the parser
        code = exc.code if isinstance(exc.code, int) else 1
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == case.code, f"{case.id}: exit {code}, stderr:\n{err}"
    assert "Traceback" not in err, f"{case.id}: traceback:\n{err}"
    if case.lines is not None:
        error_lines = [line for line in lines if "warning:" not in line]
        assert len(error_lines) == case.lines, f"{case.id}: expected {case.lines} line(s), got:\n{err}"
    if case.needle:
        assert case.needle in err, f"{case.id}: {case.needle!r} not in:\n{err}"
    if case.code == 2:
        assert snapshot(tmp) == before, f"{case.id}: files changed by a refused command"
    return err


def params(cases: Sequence[Case]) -> list[object]:
    """``pytest.mark.parametrize`` values with readable ids."""
    return [pytest.param(case, id=case.id) for case in cases]


def train_small_run(out: Path) -> None:
    """A real run folder at ``out``: digits, size small, seed 0, batch 8, 2 fp32 steps (the flags
    ``train --size small --steps 2 --batch-size 8`` give); torch's thread count is put back."""
    import torch

    from ampkit.engine import TrainConfig, train

    threads = torch.get_num_threads()
    try:
        train(
            TrainConfig(
                task="digits", size="small", steps=2, batch_size=8, out=out, device="cpu", progress=False
            )
        )
    finally:
        torch.set_num_threads(threads)
