"""``train --resume`` and ``evaluate`` on hostile checkpoints and conflicting flags: one line, exit 2,
nothing changed, no code from the file run; the accepted cases (``--resume-any``, a precision
change, no checkpoint yet, a dead lock holder) train on.

One real run folder (2 steps of the small digits task) is trained once per module and copied into
each row's folder; rows then damage, replace or lock it. Every refused row also checks that the
pickle payloads' marker file was never created.
"""

from __future__ import annotations

import builtins
import json
import logging
import os
import pathlib
import pickle
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from cli_cases import Case, params, run_case, train_small_run

TRAIN = ["train", "--no-progress", "--size", "small", "--steps", "2", "--batch-size", "8", "--out", "{tmp}/run"]  # fmt: skip
RESUME = [*TRAIN, "--resume"]
EVALUATE = ["evaluate", "{tmp}/run"]
MARKER = "PWNED"
SRC = Path(__file__).resolve().parents[1] / "src"

_SOURCE: dict[str, Path] = {}
_HOLDERS: list[subprocess.Popen[str]] = []


@pytest.fixture(scope="module", autouse=True)
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A real run folder: digits, size small, seed 0, batch 8, 2 fp32 steps (the flags of TRAIN)."""
    out = tmp_path_factory.mktemp("source") / "run"
    train_small_run(out)
    _SOURCE["run"] = out
    yield out
    _SOURCE.clear()


class _ToStderr(logging.Handler):
    """ampkit's log lines to the current ``sys.stderr`` (capsys's), as the CLI prints them."""

    def emit(self, record: logging.LogRecord) -> None:
        print(self.format(record), file=sys.stderr)


@pytest.fixture(autouse=True)
def _stop_holders() -> Iterator[None]:
    logger, handler = logging.getLogger("ampkit"), _ToStderr()
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)
    yield
    logger.removeHandler(handler)
    logger.setLevel(level)
    while _HOLDERS:
        proc = _HOLDERS.pop()
        proc.kill()
        proc.wait()


# -- setups ---------------------------------------------------------------------------------------
def copied(tmp: Path) -> Path:
    """The trained run folder, copied to ``tmp/run``; returns its ``last.pt``."""
    shutil.copytree(_SOURCE["run"], tmp / "run")
    return tmp / "run" / "last.pt"


def copy_run(tmp: Path) -> None:
    copied(tmp)


def run_then(change: Callable[[Path], None]) -> Callable[[Path], None]:
    """A setup copying the run folder, then applying ``change`` to its ``last.pt``."""

    def setup(tmp: Path) -> None:
        change(copied(tmp))

    return setup


def write_bytes(data: bytes | Callable[[bytes], bytes]) -> Callable[[Path], None]:
    def change(ckpt: Path) -> None:
        ckpt.write_bytes(data(ckpt.read_bytes()) if callable(data) else data)

    return change


def torch_saved(obj: Callable[[Path], Any]) -> Callable[[Path], None]:
    def change(ckpt: Path) -> None:
        torch.save(obj(ckpt), ckpt)

    return change


def tampered(edit: Callable[[dict[str, Any]], None]) -> Callable[[Path], None]:
    """A real checkpoint with ``edit`` applied to its dict (still plain data)."""

    def change(ckpt: Path) -> None:
        state = torch.load(ckpt, weights_only=True)
        edit(state)
        torch.save(state, ckpt)

    return change


class ExecPayload:
    """Unpickling this runs ``exec``: it would create the marker file."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (builtins.exec, (f"open({str(self.marker)!r}, 'w').write('ran')",))


class TouchPayload:
    """Unpickling this calls ``pathlib.Path.touch`` on the marker."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


def bomb(payload: type, *, wrap: bool = True) -> Callable[[Path], None]:
    """A checkpoint-shaped dict with a payload inside (``wrap``: torch's zip format; else a raw pickle)."""

    def change(ckpt: Path) -> None:
        marker = ckpt.parents[1] / MARKER
        state = torch.load(ckpt, weights_only=True)
        state["model"]["evil"] = payload(marker)
        if wrap:
            torch.save(state, ckpt)
        else:
            ckpt.write_bytes(pickle.dumps(state, protocol=2))

    return change


def zero_bytes_dict(ckpt: Path) -> None:
    torch.save({}, ckpt)


def pt_folder(tmp: Path) -> None:
    copy_run(tmp)
    (tmp / "run" / "last.pt").unlink()
    (tmp / "run" / "last.pt").mkdir()


def metrics_only(tmp: Path) -> None:
    copy_run(tmp)
    (tmp / "run" / "last.pt").unlink()


def with_leftovers(tmp: Path) -> None:
    copy_run(tmp)
    (tmp / "run" / ".last.pt.k1ll3d.tmp").write_bytes(b"")
    (tmp / "run" / ".metrics.json.k1ll3d.tmp").write_text('{"half": ')


HOLDER = """
import sys, time, types
for name, path in (("ampkit", sys.argv[1]), ("ampkit.engine", sys.argv[1] + "/engine")):
    mod = types.ModuleType(name)
    mod.__path__ = [path]
    sys.modules[name] = mod
from ampkit.engine.runlock import RunLock
RunLock(sys.argv[2]).acquire()
print("held", flush=True)
time.sleep(float(sys.argv[3]))
"""


def hold_lock(folder: Path, seconds: float = 60) -> subprocess.Popen[str]:
    """A real second process holding ``folder``'s run lock (ampkit's RunLock, without torch)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(SRC / "ampkit"), str(folder), str(seconds)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def locked(tmp: Path) -> None:
    copy_run(tmp)
    _HOLDERS.append(hold_lock(tmp / "run"))


def dead_holder(tmp: Path) -> None:
    copy_run(tmp)
    holder = hold_lock(tmp / "run", seconds=0)  # exits at once, leaving its lock file behind
    holder.wait()
    assert (tmp / "run" / ".ampkit.lock").exists()


def _half(data: bytes) -> bytes:
    return data[: len(data) // 2]


# -- rows -----------------------------------------------------------------------------------------
ADVICE = "use the checkpoint's flags or --resume-any"
BAD_FILES: list[tuple[str, Callable[[Path], None], str]] = [
    ("zero-bytes", write_bytes(b""), "empty file (0 bytes)"),
    ("truncated-half", write_bytes(_half), "damaged or truncated checkpoint"),
    ("truncated-100-bytes", write_bytes(lambda d: d[:100]), "damaged or truncated checkpoint"),
    ("garbage", write_bytes(bytes(range(256)) * 20), "refused: weights_only"),
    ("text", write_bytes(b"hello, this is not a checkpoint\n" * 8), "not a torch checkpoint"),
    ("json", write_bytes(b'{"model": {}, "step": 2}\n'), "last.pt:"),
    ("foreign-tensor", torch_saved(lambda _: torch.zeros(3)), "holds a Tensor"),
    ("foreign-list", torch_saved(lambda _: [1, 2, 3]), "holds a list"),
    ("foreign-dict", torch_saved(lambda _: {"weights": torch.ones(2)}), "a dict without model"),
    ("empty-dict", zero_bytes_dict, "a dict without model"),
    ("step-is-a-string", tampered(lambda s: s.update(step="2")), "'step' is a str, not a int"),
    (
        "config-unknown-field",
        tampered(lambda s: s["config"].update(colour="red")),
        "config.colour is an unknown field; valid: the TrainConfig fields (accumulate, batch_size",
    ),
    ("exec-payload", bomb(ExecPayload), "refused: weights_only); it references exec"),
    ("touch-payload", bomb(TouchPayload), "refused: weights_only)"),
    ("raw-pickle-payload", bomb(ExecPayload, wrap=False), "refused: weights_only)"),
]


def _bad_file_rows() -> list[Case]:
    rows = []
    for name, change, needle in BAD_FILES:
        rows.append(Case(f"resume-{name}", RESUME, needle=needle, setup=run_then(change)))
        rows.append(Case(f"evaluate-{name}", EVALUATE, needle=needle, setup=run_then(change)))
    return rows


def _drop_weight(state: dict[str, Any]) -> None:
    state["model"].pop(next(iter(state["model"])))


no_weight = tampered(_drop_weight)


def _names_task(task: str) -> Callable[[Path], None]:
    """A real checkpoint whose config names ``task`` (plain data: weights_only loads it)."""

    def edit(state: dict[str, Any]) -> None:
        state["config"]["task"] = state["task"] = task

    return run_then(tampered(edit))


def conflict(id: str, flags: list[str], needle: str) -> Case:
    """``train --resume`` on the trained run with ``flags`` that contradict its checkpoint."""
    return Case(f"resume-{id}", [*RESUME, *flags], needle=needle, setup=copy_run)


def accepted(
    id: str, argv: list[str], needle: str = "", setup: Callable[[Path], None] | None = copy_run
) -> Case:
    """A row that trains on (exit 0; log lines besides the summary)."""
    return Case(id, argv, code=0, lines=None, needle=needle, setup=setup)


ANY = [*TRAIN, "--resume-any"]
CASES = [
    # conflicting flags, each field alone, then together
    conflict("other-seed", ["--seed", "1"], "trained with seed=0; these flags say seed=1; " + ADVICE),
    conflict("other-batch-size", ["--batch-size", "4"], "batch_size=8; these flags say batch_size=4"),
    conflict("other-accumulate", ["--accumulate", "2"], "accumulate=1; these flags say accumulate=2"),
    conflict("other-size", ["--size", "default"], "size=small; these flags say size=default"),
    conflict("other-task", ["--task", "tinygpt"], "task=digits; these flags say task=tinygpt"),
    conflict("fewer-steps", ["--steps", "1"], "is already at step 2; these flags say steps=1"),
    conflict(
        "seed-and-batch", ["--seed", "3", "--batch-size", "4"], "seed=0, batch_size=8; these flags say seed=3"
    ),
    conflict(
        "seed-fewer-steps", ["--seed", "3", "--steps", "1"], "seed=0 (already at step 2); these flags say"
    ),
    # damaged, foreign and unsafe files, for train --resume and for evaluate
    *_bad_file_rows(),
    Case(
        "resume-weights-do-not-fit", RESUME, needle="does not load into this run", setup=run_then(no_weight)
    ),
    Case(
        "resume-other-precision-weights-do-not-fit",
        [*RESUME, "--precision", "bf16-mixed"],
        needle="does not load into this run",
        setup=run_then(no_weight),
    ),
    Case(
        "evaluate-weights-do-not-fit",
        EVALUATE,
        needle="weights do not fit the model",
        setup=run_then(no_weight),
    ),
    Case(
        "resume-last-pt-is-a-folder", RESUME, needle="last.pt: is a folder, not a checkpoint", setup=pt_folder
    ),
    Case("evaluate-missing-folder", ["evaluate", "{tmp}/nowhere"], needle="no checkpoint at"),
    Case(
        "evaluate-metrics-json",
        [*EVALUATE[:-1], "{tmp}/run/metrics.json"],
        needle="metrics.json:",
        setup=copy_run,
    ),
    # another run holds the folder
    Case("resume-folder-in-use", RESUME, needle="run is in use by ampkit pid ", setup=locked),
    Case("train-folder-in-use", TRAIN, needle="; wait for it or use another --out", setup=locked),
    # accepted
    accepted(
        "resume-any-other-seed",
        [*ANY, "--seed", "5"],
        "--resume-any: continuing with the checkpoint's seed=0",
    ),
    accepted("resume-any-fewer-steps", [*ANY, "--steps", "1"], "continuing with the checkpoint's steps=2"),
    accepted("resume-more-steps", [*RESUME, "--steps", "3"], "resumed from "),
    accepted(
        "resume-other-precision", [*RESUME, "--precision", "bf16-mixed"], "a fp32 checkpoint under bf16-mixed"
    ),
    accepted("resume-without-checkpoint", RESUME, "no checkpoint in ", setup=metrics_only),
    accepted("resume-into-empty-folder", RESUME, "run: starting fresh", setup=None),
    accepted("resume-dead-lock-holder", RESUME, "resumed from ", setup=dead_holder),
    accepted(
        "resume-after-kill-leftovers", RESUME, "removed 2 temporary file(s) left by", setup=with_leftovers
    ),
    accepted("evaluate-good-checkpoint", EVALUATE),
    # a checkpoint does not choose code to import (more rows: tests/test_hostile_trust.py)
    Case("evaluate-task-named-by-checkpoint", EVALUATE, needle="names the custom task this:x", setup=_names_task("this:x")),
    Case("resume-any-task-named-by-checkpoint", [*ANY, "--steps", "3"], needle="--task code:interact",
         setup=_names_task("code:interact")),
]  # fmt: skip


@pytest.mark.parametrize("case", params(CASES))
def test_resume_and_evaluate_rows(
    case: Case, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    threads = torch.get_num_threads()
    try:
        run_case(case, tmp_path, capsys, monkeypatch)
    finally:
        torch.set_num_threads(threads)
    assert not (tmp_path / MARKER).exists(), "a checkpoint ran code while it was read"
    run = tmp_path / "run"
    if run.is_dir():
        assert not list(run.glob(".*.tmp")), "a temporary file was left behind"
        assert not (run / ".ampkit.lock").exists() or _HOLDERS, "the run lock was not released"
    if case.code == 0 and case.argv[0] == "train":
        metrics = json.loads((run / "metrics.json").read_text())
        steps = [r["step"] for r in metrics["history"]]
        assert steps == list(range(1, len(steps) + 1)), "the history has gaps or repeats"
        assert metrics["config"]["seed"] == 0 and metrics["config"]["batch_size"] == 8


def test_row_count() -> None:
    assert len(CASES) >= 30


def test_payloads_would_run_code(tmp_path: Path) -> None:
    """The payloads are real: an unrestricted unpickler runs them (so the rows above prove something)."""
    for payload in (ExecPayload, TouchPayload):
        marker = tmp_path / MARKER
        pickle.loads(pickle.dumps(payload(marker)))
        assert marker.exists()
        os.unlink(marker)
