"""The engine trains every mode, matches the plain loop bit for bit, and proves its precision once."""

from __future__ import annotations

import json
import logging

import pytest
import torch
from conftest import reference_losses

from ampkit.engine import TrainConfig, train

# (mode, autocast dtype, parameter dtype of a Linear weight, scaler on)
MODES = [
    ("fp64", None, torch.float64, False),
    ("fp32", None, torch.float32, False),
    ("tf32", None, torch.float32, False),
    ("bf16-mixed", torch.bfloat16, torch.float32, False),
    ("fp16-mixed", torch.float16, torch.float32, True),
    ("bf16-true", None, torch.bfloat16, False),
    ("fp16-true", None, torch.float16, False),
]


class Probe:
    """Records what the model and optimizer look like inside the run."""

    def __init__(self) -> None:
        self.seen: dict[str, object] = {}

    def on_step_end(self, record, run) -> None:  # type: ignore[no-untyped-def]
        if record.step != 1:
            return
        with run.precision.autocast():
            out = run.model.head(
                torch.zeros(1, run.model.head.in_features, dtype=run.model.head.weight.dtype)
            )
        self.seen = {
            "autocast_out": out.dtype,
            "head_param": run.model.head.weight.dtype,
            "bn_param": run.model.features[1].weight.dtype,
            "scaler": run.optimizer.scaler.is_enabled(),
            "default_dtype": torch.get_default_dtype(),
        }


@pytest.mark.parametrize(("mode", "autocast", "param", "scaler"), MODES)
def test_every_mode_trains_digits_and_loss_falls(mode, autocast, param, scaler) -> None:  # type: ignore[no-untyped-def]
    small = "fp16" in mode  # fp16 compute is emulated on this CPU: keep shapes tiny
    probe = Probe()
    config = TrainConfig(
        task="digits",
        precision=mode,
        steps=20,
        size="small" if small else "default",
        batch_size=32,
        progress=False,
    )
    result = train(config, hooks=[probe])
    losses = [r.loss for r in result.history]
    assert len(losses) == 20 and all(map(torch.isfinite, torch.tensor(losses)))
    assert sum(losses[-5:]) / 5 < 0.8 * sum(losses[:5]) / 5
    assert probe.seen["autocast_out"] == (autocast or param)
    assert probe.seen["head_param"] == param
    # true-half modes keep BatchNorm in fp32; the others keep it in the parameter dtype
    assert probe.seen["bn_param"] == (torch.float32 if mode.endswith("-true") else param)
    assert probe.seen["scaler"] is scaler
    # fp64 makes float64 the loop's default; true-half modes only inside the model's forward
    assert probe.seen["default_dtype"] == (torch.float64 if mode == "fp64" else torch.float32)
    assert torch.get_default_dtype() == torch.float32  # restored after the run
    assert torch.backends.cudnn.allow_tf32 is True and torch.backends.cuda.matmul.allow_tf32 is False


@pytest.mark.parametrize("mode", ["fp32", "bf16-mixed", "fp16-mixed"])
def test_engine_losses_bit_identical_to_plain_loop(mode: str) -> None:
    result = train(TrainConfig(task="digits", precision=mode, steps=50, batch_size=32, progress=False))
    assert [r.loss for r in result.history] == reference_losses(mode, 50)


def test_one_precision_line_at_start_and_metrics_written(tmp_path, caplog) -> None:  # type: ignore[no-untyped-def]
    with caplog.at_level(logging.INFO, logger="ampkit"):
        result = train(
            TrainConfig(task="digits", precision="bf16-mixed", steps=5, out=tmp_path, progress=False)
        )
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("ampkit: precision=")]
    assert lines == [
        "ampkit: precision=bf16-mixed autocast=cpu/bfloat16 grad_scaler=off tf32=off params=float32"
    ]
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["precision"] == "bf16-mixed" and len(metrics["history"]) == 5
    assert metrics["final"]["accuracy"] == result.final["accuracy"]
    state = torch.load(tmp_path / "last.pt", weights_only=False)
    assert {"model", "optimizer", "scaler", "precision", "step", "rng"} <= set(state)
    assert state["step"] == 5 and state["precision"] == "bf16-mixed"


class Boom:
    """Checks the mode's global state inside the run, then raises."""

    def __init__(self, tf32: bool, dtype: torch.dtype):
        self.expected = (tf32, tf32, dtype)

    def on_step_end(self, record, run) -> None:  # type: ignore[no-untyped-def]
        seen = (
            torch.backends.cuda.matmul.allow_tf32,
            torch.backends.cudnn.allow_tf32,
            torch.get_default_dtype(),
        )
        assert seen == self.expected
        raise RuntimeError("boom at step 1")


@pytest.mark.parametrize(
    ("mode", "tf32", "dtype"), [("tf32", True, torch.float32), ("fp64", False, torch.float64)]
)
def test_global_state_restored_when_training_raises(mode: str, tf32: bool, dtype: torch.dtype) -> None:
    with pytest.raises(RuntimeError, match="boom at step 1"):
        train(TrainConfig(task="digits", precision=mode, steps=3, progress=False), hooks=[Boom(tf32, dtype)])
    assert torch.backends.cudnn.allow_tf32 is True and torch.backends.cuda.matmul.allow_tf32 is False
    assert torch.get_default_dtype() == torch.float32 and torch.get_float32_matmul_precision() == "highest"


def test_epochs_convert_to_steps() -> None:
    config = TrainConfig(task="digits", epochs=1, batch_size=64, accumulate=2)
    assert config.total_steps(1438) == 12  # ceil(1438 / 128)


def test_tinygpt_small_trains_and_counts_tokens() -> None:
    result = train(
        TrainConfig(
            task="tinygpt", precision="bf16-mixed", steps=30, size="small", batch_size=16, progress=False
        )
    )
    assert result.item_unit == "tokens" and result.history[0].items == 16 * 16
    assert result.history[-1].loss < result.history[0].loss
