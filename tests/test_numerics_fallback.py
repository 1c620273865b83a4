"""--on-nonfinite: skip without a scaler, fall back fp16-mixed -> bf16-mixed -> fp32, stop with exit 1."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import A100, CPU_BF16, CPU_PLAIN, V100
from torch import nn

from ampkit.cli import main
from ampkit.engine import TrainConfig, train
from ampkit.hardware import device_capabilities
from ampkit.numerics import next_mode
from ampkit.optim import PrecisionOptimizer
from ampkit.precision import MODES, Precision


@pytest.mark.parametrize(
    ("mode", "caps", "expected"),
    [
        ("fp16-mixed", CPU_BF16, "bf16-mixed"),
        ("fp16-mixed", A100, "bf16-mixed"),
        ("fp16-mixed", V100, "fp32"),  # no bf16 in hardware: straight to fp32
        ("fp16-mixed", CPU_PLAIN, "fp32"),
        ("bf16-mixed", A100, "fp32"),
        ("fp32", A100, None),  # end of the chain
        ("fp16-true", A100, None),  # half weights cannot switch in place
    ],
)
def test_fallback_chain(mode: str, caps, expected) -> None:  # type: ignore[no-untyped-def]
    assert next_mode(MODES[mode], caps) == expected


def _nan_grad_step(skip: bool) -> tuple[nn.Module, PrecisionOptimizer, object]:
    torch.manual_seed(0)
    model = nn.Linear(4, 2)
    sgd = torch.optim.SGD(model.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.StepLR(sgd, step_size=1, gamma=0.5)
    opt = PrecisionOptimizer(
        sgd, Precision("bf16-mixed", "cpu"), model=model, scheduler=sched, skip_nonfinite=skip
    )
    with opt.precision.autocast():
        loss = model(torch.randn(3, 4)).float().sum() * float("nan")
    opt.backward(loss)
    return model, opt, opt.step()


def test_skip_nonfinite_keeps_weights_and_scheduler_without_a_scaler() -> None:
    torch.manual_seed(0)
    before = nn.Linear(4, 2).weight.detach().clone()
    model, opt, outcome = _nan_grad_step(skip=True)
    assert not outcome.applied and opt.skipped_steps == 1
    assert torch.equal(model.weight, before)
    assert opt.optimizer.param_groups[0]["lr"] == 0.1  # scheduler held
    assert all(p.grad is None for p in model.parameters())
    plain_model, _, plain = _nan_grad_step(skip=False)  # default: the plain loop's behaviour
    assert plain.applied and torch.isnan(plain_model.weight).all()


SMALL = ["--task", "digits", "--size", "small", "--batch-size", "16", "--device", "cpu", "--no-progress"]


def test_cli_fp16_lr1000_falls_back_and_resume_stays_fallen_back(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    # lr 1000: after step 1 the weights are ~1e3, fp16 activations overflow, every later fp16 step is
    # NaN and skipped; after 5 of them the run switches (bf16 where the CPU has it, else fp32).
    out = tmp_path / "run"
    args = [
        "train",
        *SMALL,
        "--precision",
        "fp16-mixed",
        "--lr",
        "1000",
        "--on-nonfinite",
        "fallback",
        "--steps",
        "8",
        "--out",
        str(out),
    ]
    assert main(args) == 0
    summary = json.loads(capsys.readouterr().out)
    target = "bf16-mixed" if device_capabilities("cpu").bf16_in_hardware else "fp32"
    assert summary["skipped_steps"] == 5
    assert summary["fallbacks"] == [
        {"step": 6, "from": "fp16-mixed", "to": target, "reason": "5 consecutive skipped steps"}
    ]
    assert summary["precision_final"] == target
    assert summary["first_nonfinite"].startswith("step 2: nan in loss under fp16-mixed")
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["fallbacks"] == summary["fallbacks"]
    assert [r["applied"] for r in metrics["history"]][:6] == [True, False, False, False, False, False]
    assert torch.load(out / "last.pt", weights_only=False)["precision"] == target

    modes = []

    class Probe:
        def on_step_end(self, record, run) -> None:  # type: ignore[no-untyped-def]
            modes.append(run.precision.name)

    config = TrainConfig(
        task="digits",
        size="small",
        batch_size=16,
        device="cpu",
        precision="fp16-mixed",
        lr=1000,
        on_nonfinite="fallback",
        steps=10,
        out=out,
        resume=True,
        progress=False,
    )
    resumed = train(config, hooks=[Probe()])
    assert modes == [target, target]  # continues in the fallen-back mode, no fp16 steps again
    assert resumed.fallbacks == summary["fallbacks"] and len(resumed.history) == 10


def test_cli_stop_is_one_line_exit_1(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    args = [
        "train",
        "--task",
        "test_numerics_localize:nan_at_step3",
        "--precision",
        "fp32",
        "--steps",
        "5",
        "--batch-size",
        "8",
        "--device",
        "cpu",
        "--no-progress",
        "--on-nonfinite",
        "stop",
        "--detect-anomaly",
        "--out",
        str(tmp_path / "run"),
    ]
    assert main(args) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert (
        err[-1]
        == "ampkit train: error: step 3: nan in forward in module 'bad' under fp32 (--on-nonfinite stop)"
    )
    assert "Traceback" not in "\n".join(err)
