"""A checkpoint does not choose code to run: the task it names is built only when it is a built-in
task, or when the user names the same ``module:factory`` task with ``--task``.

A real run folder (2 steps of the small digits task) is trained once per module; each row copies
it, rewrites the checkpoint's ``config.task`` (plain data, so ``weights_only`` loads it) and plants
a task module beside it that writes a marker file when imported and otherwise builds the digits
task. A refused row must leave the marker unwritten (nothing imported); an accepted row must write
it (the module is real, so the refusals prove something).
"""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch
from cli_cases import Case, params, run_case, train_small_run

MARKER = "IMPORTED"
TRAIN = ["train", "--no-progress", "--size", "small", "--steps", "2", "--batch-size", "8", "--out", "{tmp}/run"]  # fmt: skip
MODULE = f"""
import pathlib
pathlib.Path(__file__).with_name({MARKER!r}).write_text("ran")
from ampkit.tasks.digits import make_task
"""
_SOURCE: dict[str, Path] = {}


@pytest.fixture(scope="module", autouse=True)
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """digits, size small, seed 0, batch 8, 2 fp32 steps (the flags of TRAIN)."""
    out = tmp_path_factory.mktemp("source") / "run"
    train_small_run(out)
    _SOURCE["run"] = out
    yield
    _SOURCE.clear()


@pytest.fixture(autouse=True)
def _isolated_imports(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Each row's planted module is imported fresh and forgotten after (``sys.path`` restored too)."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    before = set(sys.modules)
    yield
    for name in set(sys.modules) - before:
        if name.startswith(("trojan", "tasks")):
            del sys.modules[name]


def checkpoint_naming(task: object, module: str | None = None) -> Callable[[Path], None]:
    """The trained run copied to ``tmp/run`` with ``config.task = task``; ``module``.py planted in tmp."""

    def setup(tmp: Path) -> None:
        shutil.copytree(_SOURCE["run"], tmp / "run")
        ckpt = tmp / "run" / "last.pt"
        state = torch.load(ckpt, weights_only=True)
        state["config"]["task"] = task
        if isinstance(task, str):
            state["task"] = task
        torch.save(state, ckpt)
        if module is not None:
            (tmp / f"{module}.py").write_text(MODULE)

    return setup


def refused(id: str, argv: list[str], task: object, needle: str, module: str | None = None) -> Case:
    return Case(id, argv, needle=needle, setup=checkpoint_naming(task, module))


def accepted(id: str, argv: list[str], task: str, module: str, needle: str = "") -> Case:
    return Case(id, argv, code=0, lines=None, needle=needle, setup=checkpoint_naming(task, module))


EVALUATE = ["evaluate", "{tmp}/run"]
RESUME_ANY = [*TRAIN, "--resume-any", "--steps", "3"]
RESUME = [*TRAIN, "--resume", "--steps", "3"]
NOT_IMPORTED = "is not imported"
CASES = [
    # evaluate: a custom task named only by the checkpoint is refused before any import
    refused(
        "evaluate-custom-task",
        EVALUATE,
        "trojan_e:make_task",
        "names the custom task trojan_e:make_task",
        "trojan_e",
    ),
    refused(
        "evaluate-custom-task-advice",
        EVALUATE,
        "trojan_a:make_task",
        "or name it yourself with --task trojan_a:make_task",
        "trojan_a",
    ),
    refused("evaluate-tasks-py-beside-checkpoint", EVALUATE, "tasks:make_task", NOT_IMPORTED, "tasks"),
    refused("evaluate-stdlib-this", EVALUATE, "this:x", "custom task this:x"),
    refused("evaluate-stdlib-console", EVALUATE, "code:interact", "custom task code:interact"),
    refused("evaluate-builtin-by-path", EVALUATE, "ampkit.tasks.digits:make_task", NOT_IMPORTED),
    refused("evaluate-task-not-a-string", EVALUATE, 123, "config.task is 123; valid: a task name"),
    refused("evaluate-task-with-newline", EVALUATE, "trojan_n\n:make_task", "'trojan_n\\n:make_task'"),
    # evaluate --task: must be the checkpoint's own task
    refused(
        "evaluate-explicit-other-custom-task",
        [*EVALUATE, "--task", "trojan_o:make_task"],
        "trojan_x:make_task",
        "was trained on task trojan_x:make_task; valid: --task trojan_x:make_task",
        "trojan_o",
    ),
    refused(
        "evaluate-explicit-other-builtin",
        [*EVALUATE, "--task", "tinygpt"],
        "digits",
        "--task tinygpt: ",
    ),
    # train --resume-any would take the checkpoint's task: refused the same way
    refused(
        "resume-any-custom-task",
        RESUME_ANY,
        "trojan_r:make_task",
        "--resume-any: ",
        "trojan_r",
    ),
    refused("resume-any-stdlib-this", [*TRAIN, "--resume-any"], "this:x", "names the custom task this:x"),
    # train --resume without --task: the existing flags check refuses it, without importing
    refused(
        "resume-custom-task-no-flag", RESUME, "trojan_c:make_task", "task=trojan_c:make_task", "trojan_c"
    ),
    # accepted: the user names the same task
    accepted(
        "evaluate-explicit-same-task",
        [*EVALUATE, "--task", "trojan_ok:make_task"],
        "trojan_ok:make_task",
        "trojan_ok",
    ),
    accepted(
        "resume-explicit-same-task",
        [*RESUME, "--task", "trojan_rs:make_task"],
        "trojan_rs:make_task",
        "trojan_rs",
    ),
    accepted(
        "resume-any-explicit-same-task",
        [*RESUME_ANY, "--task", "trojan_ra:make_task"],
        "trojan_ra:make_task",
        "trojan_ra",
    ),
]


@pytest.mark.parametrize("case", params(CASES))
def test_a_checkpoint_does_not_choose_code(
    case: Case, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    had_this = "this" in sys.modules
    threads = torch.get_num_threads()
    try:
        run_case(case, tmp_path, capsys, monkeypatch)
    finally:
        torch.set_num_threads(threads)
    planted = list(tmp_path.glob("*.py"))
    if case.code == 0:
        assert (tmp_path / MARKER).exists(), "the named task module was not imported, yet the run passed"
        if case.argv[0] == "train":  # resumed at step 2, trained step 3
            history = json.loads((tmp_path / "run" / "metrics.json").read_text())["history"]
            assert [r["step"] for r in history] == [1, 2, 3]
    else:
        assert not (tmp_path / MARKER).exists(), "a task named by the checkpoint was imported"
        assert not any(p.stem in sys.modules for p in planted), "a planted module was imported"
        assert had_this or "this" not in sys.modules, "the checkpoint's module was imported"
