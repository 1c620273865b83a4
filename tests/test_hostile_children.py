"""Hostile input: Python files planted in the folder where ampkit runs never run in its children.

``python -c`` / ``python -m`` put the current folder first on ``sys.path``; ampkit's own children
(compare's task arms and command wrapper, ``train --nproc`` ranks, plan's probe server) start with
``-P`` (:mod:`ampkit.pychild`), so a ``json.py`` or ``typing_extensions.py`` lying in that folder
is not imported by them. Each row starts the child exactly as ampkit does (its real command line
and environment) in a folder full of planted modules that leave a marker file when imported; the
child runs far enough to import torch (or, for the wrapper, to run a command and write its
report). A user's own command under compare still sees ``sys.path`` as when run by hand.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from ampkit.engine.launch import worker_command, worker_env
from ampkit.hardware.probe_client import server_command, server_env
from ampkit.pychild import python_code, python_module
from ampkit.study.children import PARENT_ENV, arm_command
from ampkit.study.command import wrapper_command

#: Modules the children import early (stdlib, torch's typing_extensions), planted in the folder.
PLANTED = ("json", "typing_extensions", "signal", "ctypes", "runpy", "dataclasses", "__future__", "sympy")
_PLANT = """\
import os, sys
open(os.path.join({marks!r}, "{name}-%d" % os.getpid()), "w").write(" ".join(sys.argv))
os._exit(97)
"""


def plant(folder: Path, marks: Path) -> None:
    marks.mkdir()
    for name in PLANTED:
        (folder / f"{name}.py").write_text(_PLANT.format(marks=str(marks), name=name))


def _arm(tmp: Path) -> tuple[list[str], dict[str, str]]:
    # the arm's boot lines, the orphan check (this test is its parent), then ampkit.study.arm (torch),
    # which fails on the missing spec only after every import
    return arm_command(tmp / "absent.spec.json"), {**os.environ, PARENT_ENV: str(os.getpid())}


def _wrapper(tmp: Path) -> tuple[list[str], dict[str, str]]:
    return wrapper_command(tmp / "report.json", ["true"]), dict(os.environ)


def _rank(tmp: Path) -> tuple[list[str], dict[str, str]]:
    return worker_command(tmp / "absent.config.json"), worker_env(0, 1, 1)


def _probe_server(tmp: Path) -> tuple[list[str], dict[str, str]]:
    return server_command([]), server_env()  # preloads torch, says ready, ends with its stdin


def _fallback_module(tmp: Path) -> tuple[list[str], dict[str, str]]:
    # Python 3.10 has no -P: the same guarantee from code that drops the entry first
    return [*python_module("json.tool", safe_flag=False), str(tmp / "absent.json")], dict(os.environ)


ROWS: list[tuple[str, Callable[[Path], tuple[list[str], dict[str, str]]], str]] = [
    # (child, its command line and environment, what shows it ran past its imports)
    ("compare-task-arm", _arm, "absent.spec.json"),
    ("compare-command-wrapper", _wrapper, ""),
    ("train-nproc-rank", _rank, "absent.config.json"),
    ("plan-probe-server", _probe_server, '{"ready": true}'),
    ("python-3.10-fallback", _fallback_module, "absent.json"),
]


@pytest.mark.parametrize(("child", "command", "ran"), ROWS, ids=[r[0] for r in ROWS])
def test_a_module_planted_in_the_folder_does_not_run_in_a_child(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    child: str,
    command: Callable[[Path], tuple[list[str], dict[str, str]]],
    ran: str,
) -> None:
    here, marks = tmp_path / "here", tmp_path / "marks"
    here.mkdir()
    plant(here, marks)
    monkeypatch.chdir(here)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(here))])
    argv, env = command(tmp_path)
    done = subprocess.run(
        argv, cwd=here, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120
    )
    assert sorted(p.name.rsplit("-", 1)[0] for p in marks.iterdir()) == [], f"{child}: {done.stderr[-2000:]}"
    assert done.returncode != 97
    assert ran in done.stdout + done.stderr, f"{child} stopped early: {done.stderr[-2000:]}"
    if child == "compare-command-wrapper":
        assert done.returncode == 0 and "maxrss_kib" in json.loads((tmp_path / "report.json").read_text())


def test_the_planted_modules_would_run_without_the_guard(tmp_path: Path) -> None:
    """The rows above can fail: the same folder and a plain ``python -c`` run a planted module."""
    here, marks = tmp_path / "here", tmp_path / "marks"
    here.mkdir()
    plant(here, marks)
    done = subprocess.run([sys.executable, "-c", "import json"], cwd=here, capture_output=True, timeout=60)
    assert done.returncode == 97 and [p.name.split("-")[0] for p in marks.iterdir()] == ["json"]
    guarded = subprocess.run([*python_code("import json"), "x"], cwd=here, capture_output=True, timeout=60)
    fallback = subprocess.run(
        [*python_code("import json", safe_flag=False)], cwd=here, capture_output=True, timeout=60
    )
    assert (guarded.returncode, fallback.returncode) == (0, 0)
    assert len(list(marks.iterdir())) == 1


SCRIPT = """\
import sys, helper
print(repr(sys.path[0]), sys.flags.safe_path, helper.VALUE, sys.argv[1:])
"""


@pytest.mark.parametrize(
    ("user_command", "expected"),
    [
        # python SCRIPT: the script's folder first on sys.path (its sibling module imports), no -P
        (
            lambda d: [sys.executable, str(d / "tool" / "train.py"), "--epochs", "1"],
            "'{tool}' False 42 ['--epochs', '1']",
        ),
        # python -c: the current folder ('') first, as when the user typed it
        (
            lambda d: [sys.executable, "-c", "import sys; print(repr(sys.path[0]), sys.flags.safe_path)"],
            "'' False",
        ),
    ],
    ids=["script", "dash-c"],
)
def test_the_users_own_command_sees_sys_path_as_when_run_by_hand(
    tmp_path: Path, user_command: Callable[[Path], list[str]], expected: str
) -> None:
    (tmp_path / "tool").mkdir()
    (tmp_path / "tool" / "train.py").write_text(SCRIPT)
    (tmp_path / "tool" / "helper.py").write_text("VALUE = 42\n")
    done = subprocess.run(
        wrapper_command(tmp_path / "report.json", user_command(tmp_path)),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == expected.format(tool=tmp_path / "tool")
