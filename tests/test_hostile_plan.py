"""``ampkit plan`` on bad input: one line, exit 2, before the first probe (no probe process starts)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from cli_cases import Case, params, run_case

from ampkit.hardware import probe_server

PLAN = ["plan", "--task", "tinygpt", "--size", "small", "--precisions", "fp32", "--memory-budget", "1GiB"]


def _without(flag: str) -> list[str]:
    """PLAN with ``flag`` and its value left out (the row gives its own)."""
    i = PLAN.index(flag)
    return PLAN[:i] + PLAN[i + 2 :]


def _task_module(tmp: Path) -> None:
    (tmp / "badtask.py").write_text("def make_task(spec):\n    raise ValueError('no data folder')\n")


NO_GPU = not torch.cuda.is_available()

CASES = [
    # --memory-budget
    Case("budget-garbage", [*_without("--memory-budget"), "--memory-budget", "lots"], needle="--memory-budget 'lots': not a size; valid: a size such as 2GiB"),
    Case("budget-negative", [*_without("--memory-budget"), "--memory-budget=-1GiB"], needle="--memory-budget '-1GiB': not a size"),
    Case("budget-zero", [*_without("--memory-budget"), "--memory-budget", "0"], needle="--memory-budget 0: below 64.0 MiB"),
    Case("budget-tiny", [*_without("--memory-budget"), "--memory-budget", "10MiB"], needle="below 64.0 MiB, which no training process fits in"),
    Case("budget-nan", [*_without("--memory-budget"), "--memory-budget", "nan"], needle="not a size"),
    Case("budget-inf", [*_without("--memory-budget"), "--memory-budget", "1e999GiB"], needle="not a size"),
    Case("budget-unit", [*_without("--memory-budget"), "--memory-budget", "2 parsecs"], needle="not a size"),
    # --precisions
    Case("precision-unknown", [*_without("--precisions"), "--precisions", "fp32,fp12"], needle="unknown precision 'fp12'"),
    Case("precision-empty", [*_without("--precisions"), "--precisions", ","], needle="no precisions in ','"),
    Case("precision-none-runs-here", [*_without("--precisions"), "--precisions", "fp8-mixed"], needle="--precisions fp8-mixed: none runs on cpu (fp8-mixed: fp8-mixed needs compute capability >= 8.9"),
    # numbers
    Case("global-batch-zero", [*PLAN, "--global-batch", "0"], needle="--global-batch 0: must be >= 1"),
    Case("global-batch-negative", [*PLAN, "--global-batch", "-64"], needle="--global-batch -64: must be >= 1"),
    Case("global-batch-text", [*PLAN, "--global-batch", "many"], needle="argument --global-batch/--global_batch: invalid int value: 'many'"),
    Case("max-batch-zero", [*PLAN, "--max-batch", "0"], needle="--max-batch 0: must be >= 1"),
    Case("multiple-of-zero", [*PLAN, "--multiple-of", "0"], needle="--multiple-of 0: must be >= 1"),
    Case("multiple-above-max", [*PLAN, "--max-batch", "64", "--multiple-of", "128"], needle="--multiple-of 128: larger than --max-batch 64; valid: 1..64"),
    Case("steps-zero", [*PLAN, "--steps", "0"], needle="--steps 0: must be >= 1"),
    Case("timeout-zero", [*PLAN, "--probe-timeout", "0"], needle="--probe-timeout 0: must be a finite number > 0"),
    Case("timeout-nan", [*PLAN, "--probe-timeout", "nan"], needle="--probe-timeout nan: must be a finite number > 0"),
    Case("threads-zero", [*PLAN, "--threads", "0"], needle="--threads 0: must be >= 1"),
    Case("seed-negative", [*PLAN, "--seed", "-1"], needle="--seed -1: must be"),
    # device, task, size, keep-fp32
    Case("device-unknown", [*PLAN, "--device", "tpu"], needle="--device tpu: unknown device"),
    Case("device-mps", [*PLAN, "--device", "meta"], needle="--device meta: unknown device"),
    *([Case("device-no-gpu", [*PLAN, "--device", "cuda"], needle="--device cuda: no CUDA device here")] if NO_GPU else []),
    Case("task-unknown", [*_without("--task"), "--task", "imagenet"], needle="--task imagenet: unknown task 'imagenet'"),
    Case("task-no-module", [*_without("--task"), "--task", "nosuchmod:make_task"], needle="no module 'nosuchmod'"),
    Case("task-factory-raises", [*_without("--task"), "--task", "badtask:make_task"], needle="the factory raised ValueError: no data folder", setup=_task_module),
    Case("size-unknown", [*_without("--size"), "--size", "huge"], needle="--size: invalid choice: 'huge'"),
    Case("keep-fp32-bad", [*PLAN, "--keep-fp32", "re:("], needle="--keep-fp32 re:("),
]  # fmt: skip

CPUS = os.cpu_count() or 1
CASES += [
    # R3: a probe with 100000 threads crashed in OpenBLAS and was reported as a failed mode
    Case("threads-huge", [*PLAN, "--threads", "100000"], needle=f"--threads 100000: more than the {CPUS} CPU(s) of this machine; valid: a whole number in 1..{CPUS}"),
    Case("threads-one-over", [*PLAN, "--threads", str(CPUS + 1)], needle=f"valid: a whole number in 1..{CPUS}"),
    Case("steps-huge", [*PLAN, "--steps", str(10**12)], needle=f"--steps {10**12}: too many steps; valid: a whole number in 1..1_000_000_000"),
    Case("keep-fp32-empty", [*PLAN, "--keep-fp32", " , "], needle="--keep-fp32 ' , ': an empty selection"),
    Case("env-world-size-zero", PLAN, env={"WORLD_SIZE": "0"}, needle="WORLD_SIZE='0': not a whole number >= 1"),
]  # fmt: skip


@pytest.fixture(autouse=True)
def _no_probe(monkeypatch: pytest.MonkeyPatch) -> None:
    """A refused command must not get as far as starting the probe server."""

    def refuse(self: object) -> None:
        raise AssertionError("a probe server started for a refused command")

    monkeypatch.setattr(probe_server.ProbeServer, "__enter__", refuse)


@pytest.mark.parametrize("case", params(CASES))
def test_bad_plan_input_is_one_line_before_any_probe(
    case: Case, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    err = run_case(case, tmp_path, capsys, monkeypatch)
    assert err.startswith("ampkit plan: error: ")
