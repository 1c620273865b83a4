"""``ampkit compare`` on bad input: one line, exit 2, nothing written, and no arm started.

Every row is refused by the parent's checks before the first arm process starts, so each runs
in-process in well under a second. ``failing_task`` (tests/failing_task.py) supplies factories
that raise or return the wrong thing; rows with a broken task module write it under the test's
folder, which is put on ``sys.path``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from cli_cases import Case, outside, params, run_case

BASE = ["compare", "--device", "cpu", "--size", "small", "--steps", "3", "--warmup-steps", "1",
        "--precisions", "fp32", "--out", "{tmp}/study"]  # fmt: skip


def toml(text: str, name: str = "study.toml") -> Callable[[Path], None]:
    """A setup writing a study file under the test's folder."""

    def setup(tmp: Path) -> None:
        (tmp / name).write_text(text)

    return setup


def module(name: str, body: str) -> Callable[[Path], None]:
    """A setup writing a task module ``name`` under the test's folder (on sys.path in these tests)."""

    def setup(tmp: Path) -> None:
        (tmp / f"{name}.py").write_text(body)

    return setup


def a_file(tmp: Path) -> None:
    (tmp / "taken").write_text("not a folder\n")


def non_utf8(tmp: Path) -> None:
    (tmp / "study.toml").write_bytes(b'[experiments.a]\ntask = "\xff\xfe"\n')


def config_dir(tmp: Path) -> None:
    (tmp / "study.toml").mkdir()


def study(body: str) -> Callable[[Path], None]:
    """A study file: ``body`` under ``[experiments.a]`` with small, valid defaults around it."""
    return toml('[defaults]\ntask = "digits"\nsteps = 3\nwarmup_steps = 1\nprecisions = ["fp32"]\n'
                f'overrides = {{ size = "small", device = "cpu" }}\n\n[experiments.a]\n{body}\n')  # fmt: skip


CFG = ["compare", "--config", "{tmp}/study.toml", "--out", "{tmp}/study"]
PY = sys.executable
#: A command study of the flags; ``CMDB`` ends with ``--`` (the command follows).
CMD1 = ["compare", "--device", "cpu", "--precisions", "fp32", "--out", "{tmp}/study"]
CMDB = [*CMD1, "--"]
#: A valid command experiment line for study files (its own rows add the bad value).
CMD_TOML = f'command = ["{PY}", "-c", "print(1)"]'


def train_py(tmp: Path) -> None:
    """A script (not executable as a program itself) for command rows."""
    (tmp / "t.py").write_text("print('step 1 loss 1.0')\n")


# fmt: off
CASES = [
    # the task: unknown, not importable, factory missing / raising / returning something else
    Case("task-unknown", [*BASE, "--task", "nope"], needle="unknown task 'nope'"),
    Case("task-module-missing", [*BASE, "--task", "no_such_module_xyz:make"], needle="no_such_module_xyz"),
    Case(
        "task-no-factory",
        [*BASE, "--task", "ampkit.tasks.digits:no_such_factory"],
        needle="'no_such_factory'",
    ),
    Case("task-factory-raises", [*BASE, "--task", "failing_task:raising_factory"], needle="ValueError"),
    Case("task-not-a-task", [*BASE, "--task", "failing_task:not_a_task"], needle="ampkit.tasks.Task"),
    Case(
        "task-syntax-error",
        [*BASE, "--task", "broken_syntax_mod:make"],
        needle="broken_syntax_mod",
        setup=module("broken_syntax_mod", "def make(spec:\n"),
    ),
    Case(
        "task-import-raises",
        [*BASE, "--task", "raising_import_mod:make"],
        needle="raising_import_mod",
        setup=module("raising_import_mod", "raise RuntimeError('no GPU driver in this module')\n"),
    ),
    Case("task-empty", [*BASE, "--task", ""], needle="task"),
    # numbers on the command line
    Case("batch-size-0", [*BASE, "--batch-size", "0"], needle="--batch-size 0"),
    Case("batch-size-negative", [*BASE, "--batch-size", "-4"], needle="--batch-size -4"),
    Case("steps-0", [*BASE, "--steps", "0"], needle="--steps 0"),
    Case("steps-negative", [*BASE, "--steps", "-5"], needle="--steps -5"),
    Case("steps-not-a-number", [*BASE, "--steps", "ten"], needle="--steps"),
    Case("warmup-not-below-steps", [*BASE, "--warmup-steps", "3"], needle="warmup_steps"),
    Case("warmup-negative", [*BASE, "--warmup-steps", "-1"], needle="--warmup-steps -1"),
    Case("gpus-0", [*BASE, "--gpus", "0"], needle="--gpus 0"),
    Case("gpus-do-not-split-batch", [*BASE, "--gpus", "2", "--batch-size", "7"], needle="split evenly"),
    Case("seeds-garbage", [*BASE, "--seeds", "a,b"], needle="--seeds"),
    Case("seeds-empty", [*BASE, "--seeds", ","], needle="no seeds"),
    Case("seeds-negative", [*BASE, "--seeds", "-1"], needle="seed -1"),
    Case("seeds-repeated", [*BASE, "--seeds", "0,0"], needle="repeat [0]"),
    Case("seed-and-seeds", [*BASE, "--seed", "1", "--seeds", "0,1"], needle="--seed and --seeds"),
    Case("target-metric-garbage", [*BASE, "--target-metric", "high"], needle="--target-metric"),
    Case("target-metric-nan", [*BASE, "--target-metric", "nan"], needle="--target-metric nan"),
    Case("target-metric-inf", [*BASE, "--target-metric", "inf"], needle="--target-metric inf"),
    Case("lr-negative", [*BASE, "--lr", "-0.1"], needle="--lr -0.1"),
    Case("lr-nan", [*BASE, "--lr", "nan"], needle="--lr nan"),
    Case("threads-0", [*BASE, "--threads", "0"], needle="--threads 0"),
    Case("eval-every-negative", [*BASE, "--eval-every", "-2"], needle="--eval-every -2"),
    Case("size-unknown", [*BASE, "--size", "huge"], needle="--size"),
    Case("keep-fp32-bad-regex", [*BASE, "--keep-fp32", "re:["], needle="--keep-fp32 re:["),
    # precisions and device
    Case("precision-unknown", [*BASE, "--precisions", "fp99"], needle="fp99"),
    Case("precisions-empty", [*BASE, "--precisions", ","], needle="no precisions"),
    Case("precision-none-runs-here", [*BASE, "--precisions", "fp8-mixed"], needle="no precision runs"),
    Case("device-garbage", [*BASE, "--device", "tpu"], needle="--device tpu"),
    Case("device-index-absent", [*BASE, "--device", "cuda:99"], needle="--device cuda:99"),
    # the output folder
    Case("out-is-a-file", [*BASE, "--out", "{tmp}/taken"], needle="is a file", setup=a_file),
    Case("out-under-a-file", [*BASE, "--out", "{tmp}/taken/study"], needle="is a file", setup=a_file),
    Case("out-not-writable", [*BASE, "--out", "/proc/ampkit-study"], needle="--out /proc/ampkit-study"),
    Case("only-without-config", [*BASE, "--only", "a"], needle="--only needs --config"),
    # the study file itself
    Case("config-missing", CFG, needle="study.toml"),
    Case("config-is-a-folder", CFG, needle="study.toml", setup=config_dir),
    Case("config-not-toml", CFG, needle="study.toml", setup=toml("[experiments.a\nsteps = 3\n")),
    Case("config-not-utf8", CFG, needle="UTF-8", setup=non_utf8),
    Case("config-no-experiments", CFG, needle="no [experiments.NAME]", setup=toml("[defaults]\nsteps = 3\n")),
    Case("config-unknown-table", CFG, needle="unknown tables", setup=toml("[foo]\na = 1\n[experiments.a]\n")),
    Case("config-only-unknown", [*CFG, "--only", "zzz"], needle="--only zzz", setup=study("steps = 2")),
    # values of the wrong type in the study file
    Case("toml-steps-string", CFG, needle="steps = 'ten' is a string", setup=study('steps = "ten"')),
    Case("toml-steps-bool", CFG, needle="steps = True is a boolean", setup=study("steps = true")),
    Case("toml-warmup-float", CFG, needle="warmup_steps = 1.5", setup=study("warmup_steps = 1.5")),
    Case("toml-gpus-string", CFG, needle="gpus = '2' is a string", setup=study('gpus = "2"')),
    Case("toml-precisions-int", CFG, needle="precisions = 3", setup=study("precisions = 3")),
    Case("toml-precisions-mixed-list", CFG, needle="precisions", setup=study('precisions = ["fp32", 3]')),
    Case("toml-precisions-unknown", CFG, needle="fp99", setup=study('precisions = ["fp32", "fp99"]')),
    Case("toml-overrides-string", CFG, needle="overrides = 'x' is a string", setup=study('overrides = "x"')),
    Case("toml-seeds-float", CFG, needle="seeds", setup=study("seeds = [1.5]")),
    Case("toml-seeds-string", CFG, needle="seeds = '0,1' is a string", setup=study('seeds = "0,1"')),
    Case("toml-seeds-empty", CFG, needle="no seeds", setup=study("seeds = []")),
    Case("toml-target-string", CFG, needle="target_metric = 'high'", setup=study('target_metric = "high"')),
    Case("toml-task-int", CFG, needle="task = 5", setup=study("task = 5")),
    Case("toml-task-unknown", CFG, needle="unknown task 'nope'", setup=study('task = "nope"')),
    Case("toml-task-raises", CFG, needle="ValueError", setup=study('task = "failing_task:raising_factory"')),
    Case("toml-unknown-key", CFG, needle="unknown keys ['stepz']", setup=study("stepz = 3")),
    Case(
        "toml-experiment-not-table", CFG, needle="is an integer", setup=toml("[experiments]\na = 3\n")
    ),
    Case(
        "toml-experiments-not-table", CFG, needle="experiments is an integer", setup=toml("experiments = 3\n")
    ),
    Case(
        "toml-defaults-not-table",
        CFG,
        needle="defaults is a string",
        setup=toml('defaults = "x"\n[experiments.a]\n'),
    ),
    Case(
        "toml-defaults-unknown-key",
        CFG,
        needle="[defaults]: unknown keys",
        setup=toml("[defaults]\nstep = 3\n[experiments.a]\n"),
    ),
    Case(
        "toml-defaults-wrong-type",
        CFG,
        needle="steps = 'x'",
        setup=toml('[defaults]\nsteps = "x"\n[experiments.a]\n'),
    ),
    Case(
        "toml-name-escapes-out",
        CFG,
        needle="experiment name '../escape'",
        setup=toml('[experiments."../escape"]\nsteps = 3\n'),
    ),
    Case(
        "toml-warmup-not-below-steps",
        CFG,
        needle="warmup_steps=3",
        setup=study("steps = 3\nwarmup_steps = 3"),
    ),
    # overrides: unknown, reserved, wrong type, out of range
    Case(
        "override-unknown",
        CFG,
        needle="['batchsize'] not allowed",
        setup=study("overrides = { batchsize = 3 }"),
    ),
    Case("override-reserved", CFG, needle="['seed'] not allowed", setup=study("overrides = { seed = 3 }")),
    Case(
        "override-type",
        CFG,
        needle="batch_size = 'big' is a string",
        setup=study('overrides = { batch_size = "big" }'),
    ),
    Case(
        "override-batch-0",
        CFG,
        needle="batch_size = 0: out of range",
        setup=study("overrides = { batch_size = 0 }"),
    ),
    Case("override-lr-negative", CFG, needle="lr = -0.1", setup=study("overrides = { lr = -0.1 }")),
    Case("override-lr-string", CFG, needle="lr = 'fast'", setup=study('overrides = { lr = "fast" }')),
    Case(
        "override-strategy", CFG, needle="valid: ddp, fsdp", setup=study('overrides = { strategy = "zero3" }')
    ),
    Case("override-size", CFG, needle="valid: default, small", setup=study('overrides = { size = "huge" }')),
    Case(
        "override-bool", CFG, needle="valid: true or false", setup=study("overrides = { detect_anomaly = 1 }")
    ),
    Case("override-keep-regex", CFG, needle="keep_fp32", setup=study('overrides = { keep_fp32 = "re:(" }')),
    Case("override-device", CFG, needle="tpu", setup=study('overrides = { device = "tpu" }')),
    # every experiment is checked before the first one runs
    Case(
        "second-experiment-bad",
        CFG,
        needle="[experiments.b]",
        setup=toml(
            '[defaults]\nsteps = 3\nwarmup_steps = 1\nprecisions = ["fp32"]\noverrides = { size = "small" }\n'
            "[experiments.a]\n[experiments.b]\noverrides = { batch_size = -1 }\n"
        ),
    ),
    Case(
        "second-experiment-task-raises",
        CFG,
        needle="experiment 'b'",
        setup=toml(
            '[defaults]\nsteps = 3\nwarmup_steps = 1\nprecisions = ["fp32"]\noverrides = { size = "small" }\n'
            '[experiments.a]\n[experiments.b]\ntask = "failing_task:raising_factory"\n'
        ),
    ),
    # a COMMAND study (-- COMMAND ARGS): placeholders, --parse, --metric, --amp-flags, the program
    Case("cmd-dashdash-and-nothing", CMDB, needle="-- with no COMMAND after it"),
    Case("cmd-unknown-placeholder", [*CMDB, PY, "{tmp}/t.py", "{{nope}}"], needle="unknown placeholder {nope}",
         setup=train_py),
    Case("cmd-unclosed-brace", [*CMDB, PY, "{tmp}/t.py", "--seed={{seed"], needle="expected '}'", setup=train_py),
    Case("cmd-single-close-brace", [*CMDB, PY, "{tmp}/t.py", "a}}b"], needle="Single '}'", setup=train_py),
    Case("cmd-positional-placeholder", [*CMDB, PY, "{tmp}/t.py", "{{}}"], needle="unknown placeholder {}",
         setup=train_py),
    Case("cmd-amp-flags-inside-arg", [*CMDB, PY, "{tmp}/t.py", "--x={{amp_flags}}"], needle="{amp_flags} inside",
         setup=train_py),
    Case("cmd-bad-format-spec", [*CMDB, PY, "{tmp}/t.py", "{{seed:q}}"], needle="Unknown format code",
         setup=train_py),
    Case("parse-bad-regex", [*CMD1, "--parse", "loss (", "--", PY, "{tmp}/t.py"], needle="not a regular expression",
         setup=train_py),
    Case("parse-no-named-group", [*CMD1, "--parse", r"loss (\S+)", "--", PY, "{tmp}/t.py"], needle="no named group",
         setup=train_py),
    Case("parse-second-bad", [*CMD1, "--parse", "(?P<loss>x)", "--parse", "[", "--", PY, "{tmp}/t.py"],
         needle="'['", setup=train_py),
    Case("parse-without-command", [*BASE, "--parse", "(?P<loss>x)"], needle="--parse applies to command studies"),
    Case("metric-empty", [*CMD1, "--metric", "", "--", PY, "{tmp}/t.py"], needle="--metric ''", setup=train_py),
    Case("metric-only-direction", [*CMD1, "--metric", ":max", "--", PY, "{tmp}/t.py"], needle="--metric ':max'",
         setup=train_py),
    Case("amp-flags-unbalanced-quote", [*CMD1, "--amp-flags", "--x 'a", "--", PY, "{tmp}/t.py"],
         needle="No closing quotation", setup=train_py),
    Case("amp-flags-unknown-placeholder", [*CMD1, "--amp-flags", "--d {{dt}}", "--", PY, "{tmp}/t.py"],
         needle="unknown placeholder {dt}", setup=train_py),
    Case("task-and-command", [*CMD1, "--task", "digits", "--", PY, "{tmp}/t.py"],
         needle="--task and a COMMAND both given", setup=train_py),
    Case("steps-with-command", [*CMD1, "--steps", "3", "--", PY, "{tmp}/t.py"],
         needle="--steps applies to --task studies", setup=train_py),
    Case("batch-size-with-command", [*CMD1, "--batch-size", "8", "--", PY, "{tmp}/t.py"],
         needle="--batch-size applies to --task studies", setup=train_py),
    Case("config-and-command", [*CMD1, "--config", "{tmp}/study.toml", "--", PY, "{tmp}/t.py"],
         needle="--config both given", setup=train_py),
    Case("program-not-found", [*CMDB, "no_such_program_xyz", "--epochs", "1"], needle="not found on PATH"),
    Case("program-not-executable", [*CMDB, "{tmp}/t.py"], needle="not found (or not executable)", setup=train_py),
    Case("python-script-missing", [*CMDB, PY, "{tmp}/nope.py"], needle="python script", setup=train_py),
    Case("gpus-python-option", [*CMD1, "--gpus", "2", "--", PY, "-c", "print(1)"],
         needle="python option -c before the script"),
    Case("cmd-no-precision-runs", [*CMD1, "--precisions", "fp8-mixed", "--", PY, "{tmp}/t.py"],
         needle="no precision runs", setup=train_py),
    Case("cmd-out-is-a-file", [*CMD1, "--out", "{tmp}/taken", "--", PY, "-c", "1"], needle="is a file", setup=a_file),
    # command experiments in a study file
    Case("toml-command-string", CFG, needle="command = 'python x.py' is a string",
         setup=study('command = "python x.py"')),
    Case("toml-command-empty", CFG, needle="command = [] is empty", setup=study("command = []")),
    Case("toml-command-int-item", CFG, needle="holds 3", setup=study('command = ["python", 3]')),
    Case("toml-command-program-missing", CFG, needle="not found on PATH",
         setup=study('command = ["no_such_program_xyz"]')),
    Case("toml-env-string", CFG, needle="env = 'x' is a string", setup=study(f'{CMD_TOML}\nenv = "x"')),
    Case("toml-env-list-value", CFG, needle="holds [1]", setup=study(f"{CMD_TOML}\nenv = {{ A = [1] }}")),
    Case("toml-env-bool-value", CFG, needle="holds True", setup=study(f"{CMD_TOML}\nenv = {{ A = true }}")),
    Case("toml-env-study-variable", CFG, needle="env USE_AMP: set by the study",
         setup=study(f'{CMD_TOML}\nenv = {{ USE_AMP = "1" }}')),
    Case("toml-env-bad-name", CFG, needle="not a variable name", setup=study(f'{CMD_TOML}\nenv = {{ "A-B" = "1" }}')),
    Case("toml-env-unknown-placeholder", CFG, needle="unknown placeholder {nope}",
         setup=study(f'{CMD_TOML}\nenv = {{ A = "{{nope}}/x" }}')),
    Case("toml-parse-int", CFG, needle="parse = 3 is an integer", setup=study(f"{CMD_TOML}\nparse = 3")),
    Case("toml-parse-bad-regex", CFG, needle="not a regular expression", setup=study(f"{CMD_TOML}\nparse = '('")),
    Case("toml-parse-list-of-int", CFG, needle="holds 1", setup=study(f"{CMD_TOML}\nparse = [1]")),
    Case("toml-metric-int", CFG, needle="metric = 3 is an integer", setup=study(f"{CMD_TOML}\nmetric = 3")),
    Case("toml-amp-flags-empty", CFG, needle="amp_flags = '' is empty", setup=study(f"{CMD_TOML}\namp_flags = ''")),
    Case("toml-command-with-steps", CFG, needle="steps with a command experiment",
         setup=study(f"{CMD_TOML}\nsteps = 3")),
    Case("toml-command-with-task", CFG, needle="task with a command experiment",
         setup=study(f'{CMD_TOML}\ntask = "digits"')),
    Case("toml-command-with-task-overrides", CFG, needle="batch_size: task settings",
         setup=study(f"{CMD_TOML}\noverrides = {{ batch_size = 4 }}")),
    Case("toml-parse-in-task-experiment", CFG, needle="parse with a task experiment",
         setup=study("parse = '(?P<loss>x)'")),
    Case("toml-command-gpus-python-option", CFG, needle="python option -c",
         setup=study(f'command = ["{PY}", "-c", "1"]\ngpus = 2')),
    Case(
        "experiment-out-is-a-file",
        CFG,
        needle="is a file",
        setup=lambda tmp: (
            study("steps = 3")(tmp),
            (tmp / "study").mkdir(),
            (tmp / "study" / "a").write_text("x"),
        ),
    ),
]
# fmt: on

CPUS = os.cpu_count() or 1


def too_big(path: Path) -> None:
    with path.open("wb") as handle:  # sparse: 16 MiB + 1 byte of zeros, no disk used
        handle.truncate((16 << 20) + 1)


def self_link(path: Path) -> None:
    path.symlink_to(path)


def nested_toml(tmp: Path) -> None:
    (tmp / "study.toml").write_text("[experiments.a]\nenv = { X = " + "[" * 5000 + "]" * 5000 + " }\n")


# fmt: off
HOSTILE = [
    # R3: threads beyond the machine (a flag, a study file's overrides)
    Case("threads-huge", [*BASE, "--threads", "100000"],
         needle=f"--threads 100000: more than the {CPUS} CPU(s) of this machine; valid: a whole number in 1..{CPUS}"),
    Case("toml-threads-huge", CFG, setup=study("overrides = { threads = 100000 }"),
         needle=f"threads = 100000: more than the {CPUS} CPU(s) of this machine; valid: 1..{CPUS}"),
    # R7: a config that never ends or blocks, or is too big
    Case("config-dev-zero", ["compare", "--config", "/dev/zero", "--out", "{tmp}/study"],
         needle="--config /dev/zero: not a regular file (a device, FIFO or socket); valid: a UTF-8 TOML study file"),
    Case("config-fifo", ["compare", "--config", "{tmp}-x/fifo", "--out", "{tmp}/study"],
         setup=outside("fifo", lambda p: os.mkfifo(p)), needle="/fifo: not a regular file"),
    Case("config-over-16-mib", ["compare", "--config", "{tmp}-x/big.toml", "--out", "{tmp}/study"],
         setup=outside("big.toml", too_big), needle="16,777,217 bytes, more than 16 MiB; valid: a UTF-8 TOML"),
    Case("config-dangling-symlink", ["compare", "--config", "{tmp}-x/link", "--out", "{tmp}/study"],
         setup=outside("link", lambda p: p.symlink_to(p.parent / "nowhere")), needle="/link: no such file"),
    Case("config-empty-path", ["compare", "--config", "", "--out", "{tmp}/study"],
         needle="argument --config: '' is an empty path"),
    # R8: nesting, NUL bytes, launcher variables
    Case("toml-nested-5000", CFG, setup=nested_toml, needle="nested more than 64 levels deep; valid: a UTF-8 TOML"),
    Case("toml-env-nul", CFG, setup=study(f'{CMD_TOML}\nenv = {{ X = "a\\u0000b" }}'),
         needle="env X 'a\\x00b': holds a NUL byte; valid: text without NUL bytes"),
    Case("toml-command-nul", CFG, setup=study(f'command = ["{PY}", "-c", "1\\u0000"]'),
         needle="holds a NUL byte"),
    Case("env-rank-garbage", BASE, env={"RANK": "abc"}, needle="RANK='abc': not a whole number >= 0"),
    Case("env-timeout-garbage", [*BASE, "--gpus", "2"], env={"AMPKIT_DIST_TIMEOUT": "abc"},
         needle="AMPKIT_DIST_TIMEOUT='abc': not a number of seconds"),
    # R6, R10: --out a broken symlink or empty
    Case("out-dangling-symlink", [*BASE[:-1], "{tmp}-x/link"], setup=outside("link", lambda p: p.symlink_to(p.parent / "gone")),
         needle="/link: is a symlink to a missing target"),
    Case("out-symlink-loop", [*BASE[:-1], "{tmp}-x/loop"],
         setup=outside("loop", self_link), needle="/loop: is a symlink loop"),
    Case("out-empty", [*BASE[:-1], ""], needle="argument --out: '' is an empty path"),
    # misc: steps, keep_fp32, metric direction
    Case("steps-huge", [*BASE, "--steps", str(10**23)], needle="too many steps; valid: a whole number in 1..1_000_000_000"),
    Case("toml-steps-huge", CFG, setup=study("steps = 99999999999999999999"),
         needle="steps = 99999999999999999999: too many; valid: a whole number in 1..1_000_000_000"),
    Case("toml-steps-over-cap", CFG, setup=study("steps = 1000000001"),
         needle="steps = 1000000001: too many; valid: a whole number in 1..1_000_000_000"),
    Case("keep-fp32-commas", [*BASE, "--keep-fp32", ",,"], needle="--keep-fp32 ',,': an empty selection"),
    Case("toml-keep-fp32-empty", CFG, setup=study('overrides = { keep_fp32 = "" }'), needle="an empty selection"),
    Case("metric-direction-unknown", [*CMD1, "--metric", "acc:sideways", "--", PY, "-c", "1"],
         needle="--metric 'acc:sideways': unknown direction 'sideways'; valid: a logged value's name, optionally with :max or :min"),
    Case("toml-metric-direction-unknown", CFG, setup=study(f'{CMD_TOML}\nmetric = "acc:up"'),
         needle="metric 'acc:up': unknown direction 'up'"),
]
# fmt: on
CASES += HOSTILE


@pytest.mark.parametrize("case", params(CASES))
def test_compare_refuses_bad_input_before_any_arm(
    case: Case, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(tmp_path))  # the rows' own task modules
    started: list[object] = []
    monkeypatch.setattr("ampkit.study.children.start_arm", lambda *a, **k: started.append(a))
    monkeypatch.setattr("ampkit.study.processes.start_arm", lambda *a, **k: started.append(a))
    monkeypatch.setattr("ampkit.study.children.start_command", lambda *a, **k: started.append(a))
    err = run_case(case, tmp_path, capsys, monkeypatch)
    assert started == [], f"{case.id}: an arm started before the refusal"
    assert err.startswith("ampkit compare: error:") or "(see ampkit compare --help)" in err, err


def test_the_table_has_enough_rows() -> None:
    assert len(CASES) >= 30 and len({c.id for c in CASES}) == len(CASES)
