"""``ampkit.log``, ``ampkit.study_seed`` and ``AMPKIT_PRECISION``: what a studied script reads and writes.

The contract with ``ampkit compare -- COMMAND`` is in :mod:`ampkit.script_log`'s docstring.
Two tests start a real process, because dying is the point: one that ends with ``os._exit``
(no flush, no atexit) and one that is SIGKILLed while it writes lines as fast as it can.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from conftest import CPU_BF16, STUDY_VARS

import ampkit
from ampkit import Precision, PrecisionError, PrecisionWarning, add_precision_args, script_log
from ampkit.errors import UsageError
from ampkit.precision import PrecisionRequest, resolve

pytestmark = pytest.mark.usefixtures("outside_study")


@pytest.fixture
def log_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """This process is an arm of a study: ``AMPKIT_LOG_FILE`` points into ``tmp_path``."""
    path = tmp_path / "arm" / "log.jsonl"
    path.parent.mkdir()
    monkeypatch.setenv("AMPKIT_LOG_FILE", str(path))
    return path


def strict_lines(path: Path) -> list[dict[str, Any]]:
    """Every line of ``path`` as strict JSON (NaN/Infinity tokens refused), each ending in a newline."""
    data = path.read_bytes()
    assert data.endswith(b"\n")

    def refuse(token: str) -> None:
        raise AssertionError(f"non-standard JSON token {token}")

    return [json.loads(line, parse_constant=refuse) for line in data.decode().splitlines()]


class Poison:
    """A value whose conversion fails loudly: proves ``log`` did no work on it."""

    def item(self) -> float:
        raise AssertionError("log converted a value outside a study")

    def numel(self) -> int:
        raise AssertionError("log inspected a value outside a study")

    def __float__(self) -> float:
        raise AssertionError("log converted a value outside a study")


def open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


# -- outside a study ------------------------------------------------------------------------------


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc to count open files")
def test_log_outside_a_study_creates_nothing_and_touches_no_value(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    before = open_fds()
    for i in range(1000):
        ampkit.log({"loss": Poison(), "acc": torch.tensor(0.5, requires_grad=True)}, step=i)
    ampkit.log("not even a mapping")  # type: ignore[arg-type]
    Precision("fp32", "cpu")  # no proof line either
    assert open_fds() == before
    assert list(tmp_path.iterdir()) == []


# -- inside a study -------------------------------------------------------------------------------


def test_log_appends_one_strict_json_line_per_call(log_file: Path) -> None:
    began = time.time()
    ampkit.log({"loss": torch.tensor(0.25, requires_grad=True) * 2, "acc": 1, "lr": np.float32(0.5)}, step=2)
    ampkit.log({"loss": float("nan"), "grad": torch.tensor([float("inf")]), "low": -math.inf})
    ampkit.log({"loss": 0.125}, step=np.int64(3))  # type: ignore[arg-type]
    lines = strict_lines(log_file)
    assert [(e["kind"], e["step"]) for e in lines] == [("log", 2), ("log", None), ("log", 3)]
    assert lines[0]["values"] == {"loss": 0.5, "acc": 1.0, "lr": 0.5}
    assert lines[1]["values"] == {"loss": "NaN", "grad": "Infinity", "low": "-Infinity"}
    assert all(began <= e["time"] <= time.time() for e in lines)
    assert [e["time"] for e in lines] == sorted(e["time"] for e in lines)
    read = script_log.read_log(log_file)  # the study's reader gives floats back
    assert math.isnan(read[1]["values"]["loss"]) and read[1]["values"]["low"] == -math.inf


def test_values_it_cannot_record_are_one_warning_each_and_the_rest_is_kept(log_file: Path) -> None:
    with pytest.warns(RuntimeWarning) as caught:
        ampkit.log({"phase": "warmup", "vec": torch.ones(3), "loss": 1.5}, step=1.5)  # type: ignore[arg-type]
        ampkit.log({"phase": "warmup", "loss": 2.5}, step=2)  # the same problem again: no new warning
        ampkit.log([("loss", 1.0)])  # type: ignore[arg-type]
    messages = sorted(str(w.message) for w in caught)
    assert len(messages) == 4, messages
    assert "'phase' is a str, not a number" in messages[0]
    assert "'vec' is a tensor of 3 elements" in messages[1]
    assert "step must be an integer, not a float" in messages[2]
    assert "values must be a mapping" in messages[3]
    assert all(w.filename == __file__ for w in caught)  # the warning names the user's line
    lines = strict_lines(log_file)
    assert [(e["step"], e["values"]) for e in lines] == [(None, {"loss": 1.5}), (2, {"loss": 2.5})]


def test_an_unwritable_log_file_is_one_warning_not_a_crash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AMPKIT_LOG_FILE", str(tmp_path / "missing" / "log.jsonl"))
    with pytest.warns(RuntimeWarning, match="cannot write .*log.jsonl.*further values are dropped") as caught:
        for step in range(5):
            ampkit.log({"loss": 1.0}, step=step)
    assert len(caught) == 1
    assert not (tmp_path / "missing").exists()


@pytest.mark.parametrize(("rank", "writes"), [("1", False), ("3", False), ("0", True), ("", True)])
def test_only_rank_zero_writes(
    log_file: Path, monkeypatch: pytest.MonkeyPatch, rank: str, writes: bool
) -> None:
    monkeypatch.setenv("RANK", rank)
    ampkit.log({"loss": 1.0}, step=1)
    Precision("fp32", "cpu")
    assert log_file.exists() is writes
    if writes:
        assert [e["kind"] for e in strict_lines(log_file)] == ["log", "precision"]


def test_precision_line_once_per_distinct_precision(log_file: Path) -> None:
    first = Precision("fp32", "cpu")
    Precision("fp32", "cpu")  # the same again: no second line
    ampkit.log({"loss": 1.0}, step=1)
    bf16 = Precision("bf16-mixed", "cpu", caps=CPU_BF16)
    Precision.from_env({"AMPKIT_PRECISION": "bf16"}, caps=CPU_BF16)  # same describe(): nothing new
    events = strict_lines(log_file)
    assert [e["kind"] for e in events] == ["precision", "log", "precision"]
    assert {k: events[0][k] for k in ("precision", "describe")} == {
        "precision": "fp32",
        "describe": first.describe(),
    }
    assert events[2]["precision"] == "bf16-mixed" and events[2]["describe"] == bf16.describe()
    assert events[2]["describe"].startswith("ampkit: precision=bf16-mixed autocast=cpu/bfloat16")


# -- processes that die -----------------------------------------------------------------------------


def _child(code: str, log: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if k not in STUDY_VARS}
    env["AMPKIT_LOG_FILE"] = str(log)
    return subprocess.Popen([sys.executable, "-c", code], env=env, stderr=subprocess.PIPE)


def test_lines_survive_os_exit_without_any_flush(tmp_path: Path) -> None:
    log = tmp_path / "log.jsonl"
    code = "import os, ampkit\nfor i in range(3): ampkit.log({'loss': i / 4}, step=i + 1)\nos._exit(7)"
    proc = _child(code, log)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 7, err.decode()
    assert [(e["step"], e["values"]["loss"]) for e in strict_lines(log)] == [(1, 0.0), (2, 0.25), (3, 0.5)]


def test_sigkill_mid_stream_leaves_only_whole_lines(tmp_path: Path) -> None:
    log = tmp_path / "log.jsonl"
    # ~600-byte lines: a buffered writer flushes whole 8 kB buffers, cutting a line at every flush
    code = (
        "import ampkit\nvalues = {f'metric_{k}': k / 7 for k in range(24)}\ni = 0\n"
        "while True:\n    i += 1\n    ampkit.log(values, step=i)\n"
    )
    proc = _child(code, log)
    try:
        deadline = time.monotonic() + 120
        while (not log.exists() or log.read_bytes().count(b"\n") < 50) and time.monotonic() < deadline:
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            time.sleep(0.01)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    events = strict_lines(log)
    assert len(events) >= 50
    assert [e["step"] for e in events] == list(range(1, len(events) + 1))
    assert all(len(e["values"]) == 24 for e in events)


# -- AMPKIT_SEED ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "expected"), [(None, 5), ("", 5), ("  ", 5), ("7", 7), (" 12 ", 12), ("-1", -1)]
)
def test_study_seed(monkeypatch: pytest.MonkeyPatch, env: str | None, expected: int) -> None:
    if env is not None:
        monkeypatch.setenv("AMPKIT_SEED", env)
    assert ampkit.study_seed(5) == expected


@pytest.mark.parametrize("bad", ["seven", "1.5", "0x10"])
def test_study_seed_refuses_a_non_integer(monkeypatch: pytest.MonkeyPatch, bad: str) -> None:
    monkeypatch.setenv("AMPKIT_SEED", bad)
    with pytest.raises(UsageError, match=f"AMPKIT_SEED='{bad}' is not an integer; valid: "):
        ampkit.study_seed(0)


# -- AMPKIT_PRECISION -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"AMPKIT_PRECISION": "bf16", "USE_AMP": "1", "AMP_DTYPE": "fp16"}, "bf16-mixed"),  # ahead of USE_AMP
        ({"AMPKIT_PRECISION": "32-true", "USE_AMP": "1", "AMP_DTYPE": "bf16"}, "fp32"),
        ({"AMPKIT_PRECISION": " bf16-true "}, "bf16-true"),
        ({"AMPKIT_PRECISION": "16-mixed"}, "fp16-mixed"),
        ({"AMPKIT_PRECISION": "", "USE_AMP": "1", "AMP_DTYPE": "bf16"}, "bf16-mixed"),  # empty = unset
        ({"USE_AMP": "0"}, "fp32"),
        ({}, "fp32"),
    ],
)
def test_from_env_honours_ampkit_precision_first(env: dict[str, str], expected: str) -> None:
    assert Precision.from_env(env, caps=CPU_BF16).name == expected


def _args(argv: list[str], *, script_flags: bool = False) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    if script_flags:  # a seed script's own switch, with its own default dtype
        parser.add_argument("--mixed_precision", action="store_true")
        parser.add_argument("--amp_dtype", choices=["fp16", "bf16"], default="fp16")
    return add_precision_args(parser).parse_args(argv)


FROM_ARGS_ROWS = [
    # (id, argv, script's own flags, AMPKIT_PRECISION, mode run, conflict warned)
    ("no-flags", [], False, "bf16-mixed", "bf16-mixed", False),
    ("no-flags-alias", [], False, "no", "fp32", False),
    ("same-mode-other-spelling", ["--precision", "bf16"], False, "bf16-mixed", "bf16-mixed", False),
    ("amp-auto-agrees", ["--amp"], False, "bf16-mixed", "bf16-mixed", False),
    ("script-default-dtype-is-no-flag", [], True, "bf16-mixed", "bf16-mixed", False),
    ("precision-flag-wins", ["--precision", "fp32"], False, "bf16-mixed", "fp32", True),
    ("seed-flags-win", ["--mixed_precision", "--amp_dtype", "bf16"], True, "fp32", "bf16-mixed", True),
    ("amp-auto-wins", ["--amp"], False, "fp32", "bf16-mixed", True),
]


@pytest.mark.parametrize(
    ("argv", "script_flags", "study", "expected", "conflict"),
    [row[1:] for row in FROM_ARGS_ROWS],
    ids=[row[0] for row in FROM_ARGS_ROWS],
)
def test_from_args_honours_ampkit_precision_and_flags_win_with_a_warning(
    monkeypatch: pytest.MonkeyPatch,
    argv: list[str],
    script_flags: bool,
    study: str,
    expected: str,
    conflict: bool,
) -> None:
    monkeypatch.setenv("AMPKIT_PRECISION", study)
    monkeypatch.setenv("USE_AMP", "1")  # AMPKIT_PRECISION outranks it
    monkeypatch.setenv("AMP_DTYPE", "fp16")
    args = _args(argv, script_flags=script_flags)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        prec = Precision.from_args(args, device="cpu", caps=CPU_BF16)
    assert prec.name == expected
    said = [w for w in caught if "the study asked for" in str(w.message)]
    assert len(said) == int(conflict)
    if conflict:
        asked = Precision(study, "cpu", caps=CPU_BF16).name
        assert said[0].category is PrecisionWarning and said[0].filename == __file__
        assert (
            f"the study asked for {asked} (AMPKIT_PRECISION) but the script's precision flags say {expected}"
            in str(said[0].message)
        )


def test_resolve_falls_back_to_ampkit_precision_for_the_cli() -> None:
    """``ampkit train`` without precision flags, run as a study's command, trains the arm's mode."""
    env = {"AMPKIT_PRECISION": "fp16", "USE_AMP": "1", "AMP_DTYPE": "bf16"}
    assert resolve(PrecisionRequest(), environ=env) == "fp16-mixed"
    assert resolve(PrecisionRequest(precision="fp32"), environ=env) == "fp32"


@pytest.mark.parametrize("argv", [[], ["--precision", "fp32"]])
def test_an_unknown_ampkit_precision_is_one_clear_error(
    monkeypatch: pytest.MonkeyPatch, argv: list[str]
) -> None:
    monkeypatch.setenv("AMPKIT_PRECISION", "fp12")
    with pytest.raises(
        PrecisionError, match=r"unknown AMPKIT_PRECISION='fp12'; valid: fp64, fp32, .*bf16-mixed"
    ):
        Precision.from_args(_args(argv), device="cpu")
    with pytest.raises(PrecisionError, match="unknown AMPKIT_PRECISION='fp12'"):
        Precision.from_env({"AMPKIT_PRECISION": "fp12"})
