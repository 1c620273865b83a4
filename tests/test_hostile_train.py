"""``ampkit train`` on bad input: one line on stderr, exit 2, nothing created, before any training.

Every row is refused by the checks in ``cli/train.py`` before a model is built (task rows: before
the first step), so each runs in-process in a fraction of a second. Rows with a broken task
module write it under the test's folder, which is put on ``sys.path`` (no ``__pycache__`` is
written, so "nothing created" still holds).
"""

from __future__ import annotations

import errno
import json
import logging
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch
from cli_cases import Case, outside, params, run_case

from ampkit.cli import main
from ampkit.engine.launch import LaunchError
from ampkit.tasks import Task, TaskSpec, build_task

TRAIN = ["train", "--no-progress", "--size", "small", "--steps", "2", "--batch-size", "8", "--out", "{tmp}/run"]  # fmt: skip


def module(name: str, body: str) -> Callable[[Path], None]:
    """A setup writing the task module ``name`` under the test's folder (on ``sys.path`` here)."""

    def setup(tmp: Path) -> None:
        (tmp / f"{name}.py").write_text(body)

    return setup


def a_file(name: str) -> Callable[[Path], None]:
    def setup(tmp: Path) -> None:
        (tmp / name).write_text("not a folder\n")

    return setup


def read_only_folder(tmp: Path) -> None:
    (tmp / "ro").mkdir()
    (tmp / "ro").chmod(0o500)


FACTORIES = (
    "import sys\n"
    "def raises(spec):\n    return 1 / 0\n"
    "def wrong_type(spec):\n    return 'a task'\n"
    "def exits(spec):\n    sys.exit(3)\n"
    "not_callable = 42\n"
)


def _device_rows() -> list[Case]:
    rows = [
        Case(
            "device-garbage", [*TRAIN, "--device", "gpu0"], needle="--device gpu0: unknown device; valid: cpu"
        ),
        Case("device-bad-index", [*TRAIN, "--device", "cuda:x"], needle="--device cuda:x: unknown device"),
        Case("device-empty", [*TRAIN, "--device", ""], needle="--device '': unknown device"),
        Case("device-meta", [*TRAIN, "--device", "meta"], needle="--device meta: unknown device"),
    ]
    if torch.cuda.is_available():
        rows.append(
            Case("device-cuda-index", [*TRAIN, "--device", "cuda:99"], needle="--device cuda:99: only")
        )
    else:
        rows += [
            Case(
                "device-cuda-no-gpu",
                [*TRAIN, "--device", "cuda"],
                needle="--device cuda: no CUDA device here (torch.cuda.is_available() is False); valid: cpu",
            ),
            Case("device-cuda-0-no-gpu", [*TRAIN, "--device", "cuda:0"], needle="no CUDA device here"),
        ]
    if not torch.backends.mps.is_available():
        rows.append(Case("device-mps-absent", [*TRAIN, "--device", "mps"], needle="no MPS device here"))
    return rows


def _number_rows() -> list[Case]:
    finite_pos = "must be a finite number > 0"
    bad = [
        ("lr", "nan", "--lr nan: " + finite_pos),
        ("lr", "-1", "--lr -1: " + finite_pos),
        ("lr", "0", "--lr 0: " + finite_pos),
        ("lr", "inf", "--lr inf: " + finite_pos),
        ("threads", "-1", "--threads -1: must be >= 1"),
        ("threads", "0", "--threads 0: must be >= 1"),
        ("threads", "1.5", "invalid int value: '1.5'"),
        ("epochs", "nan", "--epochs nan: " + finite_pos),
        ("epochs", "inf", "--epochs inf: " + finite_pos),
        ("epochs", "-1", "--epochs -1: " + finite_pos),
        ("epochs", "0", "--epochs 0: " + finite_pos),
        ("steps", "0", "--steps 0: must be >= 1"),
        ("steps", "-3", "--steps -3: must be >= 1"),
        ("checkpoint-every", "-1", "--checkpoint-every -1: must be >= 0"),
        ("eval-every", "-1", "--eval-every -1: must be >= 0 (0: at the end)"),
        ("clip-grad-norm", "-1", "--clip-grad-norm -1: " + finite_pos),
        ("clip-grad-norm", "nan", "--clip-grad-norm nan: " + finite_pos),
        ("clip-grad-norm", "0", "--clip-grad-norm 0: " + finite_pos),
        ("clip-grad-value", "-1", "--clip-grad-value -1: " + finite_pos),
        ("clip-grad-value", "nan", "--clip-grad-value nan: " + finite_pos),
        ("clip-grad-value", "inf", "--clip-grad-value inf: " + finite_pos),
        ("timeout", "-5", "--timeout -5: " + finite_pos),
        ("timeout", "nan", "--timeout nan: " + finite_pos),
        ("accumulate", "0", "--accumulate 0: must be >= 1"),
        ("batch-size", "0", "--batch-size 0: must be >= 1"),
        ("batch-size", "-8", "--batch-size -8: must be >= 1"),
        ("nproc", "0", "--nproc 0: must be >= 1"),
        ("nproc", "-1", "--nproc -1: must be >= 1"),
        ("seed", "-1", "--seed -1: must be a whole number in 0..9223372036854775807"),
        ("seed", str(2**64), f"--seed {2**64}: must be a whole number in 0.."),
        ("fallback-after", "0", "--fallback-after 0: must be >= 1"),
        ("fallback-scale-floor", "nan", "--fallback-scale-floor nan: must be a finite number >= 0"),
        ("fallback-scale-floor", "-1", "--fallback-scale-floor -1: must be a finite number >= 0"),
    ]
    return [
        Case(f"{flag}-{value}", [*TRAIN, f"--{flag}", value], needle=needle) for flag, value, needle in bad
    ]


def _choice_rows() -> list[Case]:
    return [
        Case(
            "precision-unknown",
            [*TRAIN, "--precision", "fp33"],
            needle="unknown precision 'fp33'; valid: fp64",
        ),
        Case(
            "precision-conflict",
            [*TRAIN, "--precision", "fp32", "--amp"],
            needle="conflicting precision flags",
        ),
        Case(
            "amp-dtype-int8",
            [*TRAIN, "--amp-dtype", "int8", "--mixed-precision"],
            needle="unknown --amp_dtype 'int8'; valid: fp16, bf16",
        ),
        Case("size-unknown", [*TRAIN, "--size", "huge"], needle="invalid choice: 'huge'"),
        Case("strategy-unknown", [*TRAIN, "--strategy", "zero3"], needle="invalid choice: 'zero3'"),
        Case("on-nonfinite-unknown", [*TRAIN, "--on-nonfinite", "ignore"], needle="invalid choice: 'ignore'"),
        Case("bf16-update-unknown", [*TRAIN, "--bf16-update", "exact"], needle="invalid choice: 'exact'"),
        Case("unknown-flag", [*TRAIN, "--bogus"], needle="unrecognized arguments: --bogus"),
        Case("lr-not-a-number", [*TRAIN, "--lr", "fast"], needle="invalid float value: 'fast'"),
    ]


def _task_rows() -> list[Case]:
    return [
        Case(
            "task-unknown",
            [*TRAIN, "--task", "nosuch"],
            needle="unknown task 'nosuch'; valid: digits, tinygpt",
        ),
        Case("task-empty-module", [*TRAIN, "--task", ":make"], needle="unknown task ':make'"),
        Case("task-empty-factory", [*TRAIN, "--task", "hw_fac:"], needle="unknown task 'hw_fac:'"),
        Case(
            "task-file-path",
            [*TRAIN, "--task", "tasks/mine.py:make"],
            needle="'tasks/mine.py' is not a module name; valid: module:factory",
        ),
        Case("task-relative-module", [*TRAIN, "--task", ".mine:make"], needle="'.mine' is not a module name"),
        Case("task-no-module", [*TRAIN, "--task", "hw_nosuch_mod:make"], needle="no module 'hw_nosuch_mod'"),
        Case(
            "task-syntax-error",
            [*TRAIN, "--task", "hw_syntax:make"],
            needle="importing 'hw_syntax' failed: SyntaxError",
            setup=module("hw_syntax", "def make(:\n    pass\n"),
        ),
        Case(
            "task-module-raises",
            [*TRAIN, "--task", "hw_raises:make"],
            needle="importing 'hw_raises' failed: RuntimeError: boom (",
            setup=module("hw_raises", "raise RuntimeError('boom\\nsecond line of the message')\n"),
        ),
        Case(
            "task-module-exits",
            [*TRAIN, "--task", "hw_exits:make"],
            needle="importing 'hw_exits' failed: SystemExit: 3",
            setup=module("hw_exits", "import sys\nsys.exit(3)\n"),
        ),
        Case(
            "task-module-missing-dependency",
            [*TRAIN, "--task", "hw_dep:make"],
            needle="ModuleNotFoundError: No module named 'hw_not_installed'",
            setup=module("hw_dep", "import hw_not_installed\n"),
        ),
        Case(
            "task-factory-raises",
            [*TRAIN, "--task", "hw_fac:raises"],
            needle="--task hw_fac:raises: the factory raised ZeroDivisionError: division by zero (",
            setup=module("hw_fac", FACTORIES),
        ),
        Case(
            "task-factory-raises-nproc",  # built once in the parent: no rank is launched
            [*TRAIN, "--task", "hw_fac:raises", "--nproc", "2"],
            needle="the factory raised ZeroDivisionError",
            setup=module("hw_fac", FACTORIES),
        ),
        Case(
            "task-factory-exits",
            [*TRAIN, "--task", "hw_fac:exits"],
            needle="the factory raised SystemExit: 3 (",
            setup=module("hw_fac", FACTORIES),
        ),
        Case(
            "task-factory-wrong-type",
            [*TRAIN, "--task", "hw_fac:wrong_type"],
            needle="the factory returned str; valid: a factory returning ampkit.tasks.Task",
            setup=module("hw_fac", FACTORIES),
        ),
        Case(
            "task-factory-not-callable",
            [*TRAIN, "--task", "hw_fac:not_callable"],
            needle="hw_fac.not_callable is not callable (int)",
            setup=module("hw_fac", FACTORIES),
        ),
        Case(
            "task-factory-missing",
            [*TRAIN, "--task", "hw_fac:nothing_here"],
            needle="module 'hw_fac' has no 'nothing_here'",
            setup=module("hw_fac", FACTORIES),
        ),
    ]


def _out_rows() -> list[Case]:
    rows = [
        Case(
            "out-is-a-file",
            [*TRAIN, "--out", "{tmp}/taken"],
            needle="/taken: is a file, not a folder; valid: a writable folder",
            setup=a_file("taken"),
        ),
        Case(
            "out-under-a-file",
            [*TRAIN, "--out", "{tmp}/taken/run"],
            needle="/taken is a file, not a folder",
            setup=a_file("taken"),
        ),
    ]
    if Path("/proc/self").is_dir():  # a read-only mount, even for root
        rows.append(
            Case("out-on-proc", [*TRAIN, "--out", "/proc/ampkit-run"], needle="cannot create files in /proc")
        )
    if os.geteuid() != 0:  # root writes through permission bits; see test_out_not_writable_for_this_user
        rows.append(
            Case(
                "out-read-only-folder",
                [*TRAIN, "--out", "{tmp}/ro/run"],
                needle="cannot create files in",
                setup=read_only_folder,
            )
        )
    return rows


CPUS = os.cpu_count() or 1
SMALL = [*TRAIN[:-2], "--device", "cpu"]  # TRAIN without --out: rows add their own


def dangling(path: Path) -> None:
    path.symlink_to(path.parent / "nowhere" / "target")


def loop(path: Path) -> None:
    path.symlink_to(path.with_name(path.name + "-2"))
    path.with_name(path.name + "-2").symlink_to(path)


def _hostile_rows() -> list[Case]:
    """R3 (threads), R6 (broken symlinks), R8 (NUL, environment), R10 (empty --out), misc limits."""
    launcher = "set by torchrun or ampkit's launcher"
    env = [
        ("RANK", "abc", "RANK='abc': not a whole number >= 0; valid: 0..WORLD_SIZE-1, " + launcher),
        ("WORLD_SIZE", "abc", "WORLD_SIZE='abc': not a whole number >= 1; valid: the number of processes"),
        ("WORLD_SIZE", "0", "WORLD_SIZE='0': not a whole number >= 1"),
        ("LOCAL_RANK", "-1", "LOCAL_RANK='-1': not a whole number >= 0; valid: a whole number >= 0"),
        (
            "AMPKIT_DIST_TIMEOUT",
            "abc",
            "AMPKIT_DIST_TIMEOUT='abc': not a number of seconds in (0, 1e7]; valid",
        ),
        ("AMPKIT_DIST_TIMEOUT", "-5", "AMPKIT_DIST_TIMEOUT='-5': not a number of seconds"),
        ("AMPKIT_DIST_TIMEOUT", "inf", "AMPKIT_DIST_TIMEOUT='inf': not a number of seconds"),
    ]
    rows = [
        Case(f"env-{name}-{value}", [*TRAIN, "--nproc", "2"], needle=needle, env={name: value})
        for name, value, needle in env
    ]
    rows += [
        Case("env-rank-outside-world", TRAIN, needle="RANK=3 with WORLD_SIZE=2; valid: RANK in 0..1",
             env={"RANK": "3", "WORLD_SIZE": "2"}),
        Case("threads-huge", [*TRAIN, "--threads", "100000"],
             needle=f"--threads 100000: more than the {CPUS} CPU(s) of this machine; valid: a whole number in 1..{CPUS}"),
        Case("threads-one-over", [*TRAIN, "--threads", str(CPUS + 1)], needle=f"valid: a whole number in 1..{CPUS}"),
        Case("steps-huge", [*TRAIN, "--steps", str(10**23)],
             needle=f"--steps {10**23}: too many steps; valid: a whole number in 1..1_000_000_000"),
        Case("steps-one-over", [*TRAIN, "--steps", str(10**9 + 1)], needle="too many steps"),
        Case("epochs-huge", [*TRAIN[:4], *TRAIN[6:], "--epochs", "1e30"],
             needle="--epochs 1e+30: too many passes; valid: a number in (0, 1_000_000]"),
        Case("steps-and-epochs", [*TRAIN, "--epochs", "1"],
             needle="--steps 2 and --epochs 1 both given; valid: one of them"),
        Case("fp8-emulate-under-fp32", [*TRAIN, "--fp8-emulate"],
             needle="--fp8-emulate applies to fp8 modes, not fp32; valid: --precision fp8-mixed with it"),
        Case("fp8-emulate-under-bf16", [*TRAIN, "--precision", "bf16-mixed", "--fp8-emulate"],
             needle="not bf16-mixed"),
        Case("bf16-update-under-fp32", [*TRAIN, "--bf16-update", "kahan"],
             needle="--bf16-update kahan applies to bf16-true (bf16 weights), not fp32; valid: --precision bf16-true"),
        Case("keep-fp32-empty", [*TRAIN, "--keep-fp32", ""], needle="--keep-fp32 '': an empty selection; valid:"),
        Case("keep-fp32-commas", [*TRAIN, "--keep-fp32", ",,,"], needle="--keep-fp32 ',,,': an empty selection"),
        Case("out-empty", [*SMALL, "--out", ""], needle="argument --out: '' is an empty path; valid: a non-empty path"),
        Case("out-nul", [*SMALL, "--out", "{tmp}/a\x00b"], needle="holds a NUL byte; valid: a path without NUL"),
        Case("out-dangling-symlink", [*SMALL, "--out", "{tmp}-x/link"], setup=outside("link", dangling),
             needle="--out {tmp}-x/link: is a symlink to a missing target ({tmp}-x/nowhere/target); valid: a writable folder"),
        Case("out-under-dangling-symlink", [*SMALL, "--out", "{tmp}-x/link/run"], setup=outside("link", dangling),
             needle="--out {tmp}-x/link/run: is a symlink to a missing target ({tmp}-x/nowhere/target) ({tmp}-x/link on the way)"),
        Case("out-symlink-loop", [*SMALL, "--out", "{tmp}-x/loop"], setup=outside("loop", loop),
             needle="--out {tmp}-x/loop: is a symlink loop; valid: a writable folder"),
    ]  # fmt: skip
    if Path("/proc/self").is_dir():
        rows.append(
            Case("env-cache-on-proc", [*TRAIN, "--task", "ct"], env={"AMPKIT_CACHE": "/proc/ampkit-nope"},
                 needle="AMPKIT_CACHE /proc/ampkit-nope: cannot create files in /proc")
        )  # fmt: skip
    return rows


def _memory_rows() -> list[Case]:
    """tinygpt's stream has no sample count to refuse a batch by: the allocation failure is the refusal."""
    return [
        Case(f"batch-beyond-memory-{n}", [*TRAIN, "--task", "tinygpt", "--batch-size", str(n)],
             needle=f"ampkit train: error: out of memory (tried to allocate {gb} GB); valid: a --batch-size below {n}")
        for n, gb in ((100_000_000_000, "800.0"), (20_000_000_000, "160.0"))
    ]  # fmt: skip


CASES = (
    _device_rows()
    + _number_rows()
    + _choice_rows()
    + _task_rows()
    + _out_rows()
    + _hostile_rows()
    + _memory_rows()
)


@pytest.fixture(autouse=True)
def _no_amp_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """USE_AMP / AMP_DTYPE in the caller's environment would change the precision rows."""
    monkeypatch.delenv("USE_AMP", raising=False)
    monkeypatch.delenv("AMP_DTYPE", raising=False)


@pytest.fixture
def task_modules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """``tmp_path`` on ``sys.path``, no bytecode written, task modules forgotten afterwards."""
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    yield
    for name in [n for n in sys.modules if n.startswith("hw_")]:
        del sys.modules[name]
    ro = tmp_path / "ro"
    if ro.exists():
        ro.chmod(0o700)  # let pytest remove it


@pytest.mark.parametrize("case", params(CASES))
def test_bad_train_input_is_one_line_exit_2(
    case: Case,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    task_modules: None,
) -> None:
    # needles may name the test's folder
    case = Case(
        case.id, case.argv, case.code, case.needle.format(tmp=tmp_path), case.setup, case.lines, case.env
    )
    run_case(case, tmp_path, capsys, monkeypatch)
    assert not (tmp_path / "run").exists()


def test_out_not_writable_for_this_user(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """As root, permission bits do not stop writes; here ``os.access`` says no, as it would for a user."""
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, m, **kw: False if Path(p) == tmp_path else real(p, m, **kw))
    case = Case("out-not-writable", [*TRAIN, "--out", "{tmp}/run"], needle="cannot create files in")
    assert "permission denied" in run_case(case, tmp_path, capsys, monkeypatch)


def test_disk_fault_while_training_is_one_line_exit_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An OSError (here ENOSPC from writing the outputs) is an environment fault: one line, exit 1."""

    def full_disk(config: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp_path / "run" / "metrics.json"))

    monkeypatch.setattr("ampkit.engine.train", full_disk)
    case = Case("enospc", TRAIN, code=1, needle=f"ampkit train: error: No space left on device: {tmp_path}")
    run_case(case, tmp_path, capsys, monkeypatch)


def test_nproc_says_what_it_launches(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """``--nproc 2`` names the process count, strategy and backend before starting the ranks."""

    def no_launch(*args: object, **kwargs: object) -> None:
        raise LaunchError("rank 1 exited with code 1: stopped the other ranks")

    monkeypatch.setattr("ampkit.engine.launch.launch", no_launch)
    with caplog.at_level(logging.INFO, logger="ampkit"):
        code = main([a.format(tmp=tmp_path) for a in [*TRAIN, "--device", "cpu", "--nproc", "2"]])
    assert code == 1
    assert "ampkit: launching 2 processes (strategy ddp, backend gloo)" in caplog.messages
    assert "rank 1 exited with code 1" in capsys.readouterr().err


def inf_at_last_step(spec: TaskSpec) -> Task:
    """``digits`` (small) whose micro-batch 2 is all inf: with ``--steps 3`` the last step is skipped."""
    task = build_task("digits", TaskSpec(spec.seed, spec.batch_size, spec.device, "small"))
    clean = task.train_batch

    def train_batch(i: int) -> tuple[torch.Tensor, torch.Tensor]:
        inputs, targets = clean(i)
        return (inputs * float("inf") if i == 2 else inputs), targets

    task.train_batch = train_batch
    return task


def test_summary_gives_the_loss_scale_after_the_last_update(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    """A skipped last step halves the scale: the summary says 65536 -> 32768, not 65536 -> 65536."""
    argv = ["train", "--task", "test_hostile_train:inf_at_last_step", "--precision", "fp16-mixed",
            "--steps", "3", "--batch-size", "8", "--device", "cpu", "--no-progress", "--out", str(tmp_path)]  # fmt: skip
    with caplog.at_level(logging.INFO, logger="ampkit"):
        assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["skipped_steps"] == 1
    assert (summary["loss_scale_initial"], summary["loss_scale_final"]) == (65536.0, 32768.0)
    line = next(m for m in caplog.messages if m.startswith("ampkit: numerics:"))
    assert "skipped 1/3 steps" in line and "loss scale 65536 -> 32768 after the last update" in line


def test_summary_after_a_fallback_describes_the_final_mode(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    """fp16-mixed falls back at step 1; the FLOP share and loss scale shown are the final mode's."""
    argv = [*TRAIN, "--precision", "fp16-mixed", "--device", "cpu", "--on-nonfinite", "fallback",
            "--fallback-scale-floor", "1e9"]  # fmt: skip
    with caplog.at_level(logging.INFO, logger="ampkit"):
        assert main([a.format(tmp=tmp_path) for a in argv]) == 0
    summary = json.loads(capsys.readouterr().out)
    final = summary["precision_final"]
    assert final in ("bf16-mixed", "fp32") and summary["fallbacks"][0]["from"] == "fp16-mixed"
    assert summary["low_precision_flop_share_mode"] == final
    assert summary["low_precision_flop_share_initial"] == {"fp16-mixed": 1.0}
    assert summary["low_precision_flop_share"] == (1.0 if final == "bf16-mixed" else 0.0)
    assert summary["loss_scale_final"] is None  # neither bf16-mixed nor fp32 has a scaler
    line = next(m for m in caplog.messages if m.startswith("ampkit: numerics:"))
    dtype = "bfloat16" if final == "bf16-mixed" else "none"
    assert f"({dtype}) in {final} (100.0% in fp16-mixed before the fallback)" in line
    assert "(float16)" not in line.split(" in ")[0]
    assert f"loss scale 65536 at the start, none at the end ({final})" in line
    assert "65536 -> 65536" not in line


@pytest.mark.parametrize(
    "command", ["train", "evaluate", "analyze", "doctor", "verify", "export", "compare", "convert", "inspect"]
)
def test_help_states_each_default_once(
    command: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "1000")  # one line per flag
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert "(default: None)" not in text and "(default: False)" not in text
    for line in text.splitlines():
        assert line.lower().count("default") <= 1 or "--" not in line, line


def earlier_checkpoint(tmp: Path) -> None:
    """``{tmp}/run`` as an earlier 40-step bf16-mixed run left it (the fields the refusal names)."""
    (tmp / "run").mkdir()
    torch.save({"step": 40, "precision": "bf16-mixed", "config": {"steps": 40, "epochs": None},
                "model": {"w": torch.ones(2)}}, tmp / "run" / "last.pt")  # fmt: skip
    (tmp / "run" / "metrics.json").write_text('{"task": "digits"}\n')


def earlier_metrics_only(tmp: Path) -> None:
    (tmp / "run").mkdir()
    (tmp / "run" / "metrics.json").write_text('{"task": "digits"}\n')


def garbage_checkpoint(tmp: Path) -> None:
    (tmp / "run").mkdir()
    (tmp / "run" / "last.pt").write_bytes(b"not a checkpoint\n")


EARLIER = "/run holds a checkpoint of an earlier run"  # after --out and the test's folder
OPTIONS = "pass --resume to continue it, --overwrite to replace it, or choose another --out"
DIGITS_TRAIN = 1438  # 1797 scikit-learn digits, one fifth held out for evaluation


def _out_and_batch_rows() -> list[Case]:
    """R11 (an earlier run in --out) and R5 (--batch-size beyond the training set)."""
    return [
        Case("out-holds-earlier-run", TRAIN, setup=earlier_checkpoint,
             needle=f"{EARLIER} (step 40 of 40, precision bf16-mixed): {OPTIONS}"),
        Case("out-holds-unreadable-last-pt", TRAIN, setup=garbage_checkpoint,
             needle="/run holds a last.pt that does not read as an ampkit checkpoint: pass --overwrite to replace it"),
        Case("out-holds-earlier-metrics", TRAIN, setup=earlier_metrics_only,
             needle="/run holds metrics.json of an earlier run: pass --overwrite to replace it"),
        Case("overwrite-with-resume", [*TRAIN, "--overwrite", "--resume"], setup=earlier_checkpoint,
             needle="--overwrite with --resume: one continues the run in --out, the other replaces it; valid: one of them"),
        Case("overwrite-with-resume-any", [*TRAIN, "--overwrite", "--resume-any"], needle="--overwrite with --resume-any"),
        Case("batch-size-huge", [*TRAIN, "--batch-size", "100000000000"],
             needle=f"--batch-size 100000000000: larger than the {DIGITS_TRAIN} training samples of task digits "
                    f"(size small); valid: 1..{DIGITS_TRAIN}"),
        Case("batch-size-one-over", [*TRAIN, "--batch-size", str(DIGITS_TRAIN + 1)],
             needle=f"valid: 1..{DIGITS_TRAIN}"),
        Case("batch-size-huge-in-existing-folder", [*TRAIN, "--batch-size", "5000", "--overwrite"],
             setup=earlier_checkpoint, needle=f"--batch-size 5000: larger than the {DIGITS_TRAIN} training samples"),
        Case("batch-size-huge-nproc", [*TRAIN, "--batch-size", "5000", "--nproc", "2"],
             needle=f"--batch-size 5000: larger than the {DIGITS_TRAIN} training samples"),
    ]  # fmt: skip


@pytest.mark.parametrize("case", params(_out_and_batch_rows()))
def test_earlier_run_and_batch_beyond_the_task_are_refused(
    case: Case, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    run_case(case, tmp_path, capsys, monkeypatch)


def test_a_rerun_keeps_the_earlier_run_unless_resumed_or_overwritten(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    argv = ["train", "--no-progress", "--size", "small", "--batch-size", "8", "--out", str(out)]
    assert main([*argv, "--steps", "3"]) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    capsys.readouterr()
    assert main([*argv, "--steps", "2"]) == 2  # the same folder again, no flag: refused, nothing touched
    assert capsys.readouterr().err == (
        f"ampkit train: error: --out {out} holds a checkpoint of an earlier run (step 3 of 3, precision fp32): "
        "pass --resume to continue it, --overwrite to replace it, or choose another --out\n"
    )
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert main([*argv, "--steps", "4", "--resume"]) == 0  # continues it
    assert [r["step"] for r in json.loads((out / "metrics.json").read_text())["history"]] == [1, 2, 3, 4]
    assert main([*argv, "--steps", "2", "--overwrite"]) == 0  # replaces it
    assert [r["step"] for r in json.loads((out / "metrics.json").read_text())["history"]] == [1, 2]
    assert torch.load(out / "last.pt", weights_only=True)["step"] == 2
