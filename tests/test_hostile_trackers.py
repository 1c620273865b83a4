"""``--log`` / ``--mlflow-uri`` on bad input: one line, exit 2, before training or the first arm starts,
nothing written. Runs with or without the tracker packages installed."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from cli_cases import Case, params, run_case

TRAIN = ["train", "--size", "small", "--steps", "1", "--no-progress", "--out", "{tmp}/run"]
COMPARE = [
    "compare",
    "--size",
    "small",
    "--precisions",
    "fp32",
    "--steps",
    "2",
    "--warmup-steps",
    "1",
    "--out",
    "{tmp}/study",
]
VALID = "valid: tensorboard, mlflow (comma-separated, e.g. --log tensorboard,mlflow)"


def _a_file(tmp: Path) -> None:
    (tmp / "afile").write_text("not a folder\n")


def _mlruns_is_a_file(tmp: Path) -> None:
    (tmp / "run").mkdir()
    (tmp / "run" / "mlruns").write_text("not a folder\n")


CASES = [
    # the tracker names
    Case("train-log-unknown", [*TRAIN, "--log", "wandb"], needle=f"ampkit train: error: --log wandb: unknown tracker 'wandb'; {VALID}"),
    Case("train-log-unknown-in-list", [*TRAIN, "--log", "tensorboard,neptune"], needle="unknown tracker 'neptune'"),
    Case("train-log-empty", [*TRAIN, "--log", ""], needle=f"--log '': names no tracker; {VALID}"),
    Case("train-log-commas", [*TRAIN, "--log", ",,"], needle="names no tracker"),
    Case("train-log-blank", [*TRAIN, "--log", "  "], needle="names no tracker"),
    Case("train-log-trailing-comma", [*TRAIN, "--log", "tensorboard,"], needle="--log tensorboard,: empty name in the list"),
    Case("train-log-path-like", [*TRAIN, "--log", "runs/tb"], needle="unknown tracker 'runs/tb'"),
    Case("train-log-no-value", [*TRAIN, "--log"], needle="expected one argument"),
    # --mlflow-uri
    Case("train-uri-without-log", [*TRAIN, "--mlflow-uri", "{tmp}/ml"], needle="/ml: needs --log mlflow; valid: --log mlflow --mlflow-uri URI"),
    Case("train-uri-with-tensorboard-only", [*TRAIN, "--log", "tensorboard", "--mlflow-uri", "sqlite:///x.db"], needle="--mlflow-uri sqlite:///x.db: needs --log mlflow"),
    Case("train-uri-empty", [*TRAIN, "--log", "mlflow", "--mlflow-uri", ""], needle="--mlflow-uri '': empty; valid: a folder, file:PATH"),
    Case("train-uri-is-a-file", [*TRAIN, "--log", "mlflow", "--mlflow-uri", "{tmp}/afile"], setup=_a_file, needle="afile: is a file, not a folder"),
    Case("train-file-uri-is-a-file", [*TRAIN, "--log", "mlflow", "--mlflow-uri", "file:{tmp}/afile"], setup=_a_file, needle="is a file, not a folder"),
    Case("train-uri-under-a-file", [*TRAIN, "--log", "mlflow", "--mlflow-uri", "{tmp}/afile/store"], setup=_a_file, needle="afile is a file, not a folder"),
    Case("train-default-store-is-a-file", [*TRAIN, "--log", "mlflow"], setup=_mlruns_is_a_file, needle="mlruns: is a file, not a folder"),
    # other train flags are still checked first, with the tracker flags right
    Case("train-bad-steps-with-log", [*TRAIN, "--steps", "0", "--log", "tensorboard"], needle="--steps"),
    # compare
    Case("compare-log-unknown", [*COMPARE, "--log", "wandb"], needle=f"ampkit compare: error: --log wandb: unknown tracker 'wandb'; {VALID}"),
    Case("compare-log-empty", [*COMPARE, "--log", ""], needle="names no tracker"),
    Case("compare-uri-without-log", [*COMPARE, "--mlflow-uri", "sqlite:///x.db"], needle="needs --log mlflow"),
    Case("compare-uri-is-a-file", [*COMPARE, "--log", "mlflow", "--mlflow-uri", "{tmp}/afile"], setup=_a_file, needle="is a file, not a folder"),
    Case("compare-command-log-unknown", ["compare", "--precisions", "fp32", "--out", "{tmp}/study", "--log", "comet", "--", sys.executable, "-c", "pass"], needle="unknown tracker 'comet'"),
]  # fmt: skip


@pytest.mark.parametrize("case", params(CASES))
def test_bad_tracker_flags(case: Case, tmp_path: Path, capsys, monkeypatch) -> None:
    run_case(case, tmp_path, capsys, monkeypatch)


MISSING = [
    ("mlflow", Case("train-no-mlflow", [*TRAIN, "--log", "mlflow"],
                    needle="ampkit train: error: --log mlflow needs the mlflow package: pip install 'ampkit[mlflow]'")),
    ("tensorboard", Case("train-no-tensorboard", [*TRAIN, "--log", "tensorboard"],
                         needle="ampkit train: error: --log tensorboard needs the tensorboard package: pip install 'ampkit[tensorboard]'")),
    ("mlflow", Case("train-both-no-mlflow", [*TRAIN, "--log", "tensorboard,mlflow"], needle="--log mlflow needs the mlflow package")),
    ("mlflow", Case("compare-no-mlflow", [*COMPARE, "--log", "mlflow"],
                    needle="ampkit compare: error: --log mlflow needs the mlflow package: pip install 'ampkit[mlflow]'")),
    ("tensorboard", Case("compare-no-tensorboard", [*COMPARE, "--log", "mlflow,tensorboard"], needle="pip install 'ampkit[tensorboard]'")),
]  # fmt: skip


@pytest.mark.parametrize(("package", "case"), [pytest.param(p, c, id=c.id) for p, c in MISSING])
def test_a_missing_tracker_package_is_one_line(package, case, tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, package, None)  # `import package` now raises ImportError
    run_case(case, tmp_path, capsys, monkeypatch)
