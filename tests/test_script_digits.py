"""examples/digits_script.py, a user's own loop, trains exactly what ``ampkit train --task digits`` trains.

So a study of the script (``ampkit compare -- python examples/digits_script.py``) and a
``--task digits`` study are the same experiment. Run in-process on the small CNN; the bf16 run
is 3 steps, cheap on CPUs without avx512_bf16.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import pytest
from conftest import STUDY_VARS

from ampkit.engine import TrainConfig, train
from ampkit.script_log import read_log

SCRIPT = Path(__file__).parent.parent / "examples" / "digits_script.py"


pytestmark = pytest.mark.usefixtures("outside_study")


@pytest.fixture(scope="module")
def script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("digits_script", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def engine_run(precision: str, steps: int, seed: int = 0) -> tuple[list[float], float]:
    result = train(
        TrainConfig(
            task="digits",
            precision=precision,
            size="small",
            steps=steps,
            seed=seed,
            device="cpu",
            progress=False,
        )
    )
    return [record.loss for record in result.history], result.final["accuracy"]


def test_fp32_losses_are_bit_identical_to_the_task(
    script: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    got = script.main(["--steps", "5", "--size", "small", "--device", "cpu"])
    losses, accuracy = engine_run("fp32", 5)
    assert got["precision"] == "fp32" and got["seed"] == 0
    assert got["losses"] == losses  # exact: same model, batches, AdamW, step code
    assert got["accuracy"] == accuracy
    assert losses[-1] < losses[0]
    out = capsys.readouterr().out
    assert out.startswith("ampkit: precision=fp32 autocast=off grad_scaler=off tf32=off params=float32\n")
    assert f"val acc {accuracy:.4f}" in out


def test_as_a_study_arm_it_runs_the_arms_precision_and_seed_and_logs(
    script: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    arm = tmp_path / "arm"
    monkeypatch.setenv("AMPKIT_PRECISION", "bf16-mixed")  # what ampkit compare sets, no flag in the command
    monkeypatch.setenv("AMPKIT_SEED", "1")
    monkeypatch.setenv("AMPKIT_OUT", str(arm))
    monkeypatch.setenv("AMPKIT_LOG_FILE", str(tmp_path / "log.jsonl"))
    got = script.main(["--steps", "3", "--size", "small", "--device", "cpu"])
    events = read_log(tmp_path / "log.jsonl")
    for name in STUDY_VARS:
        monkeypatch.delenv(name, raising=False)
    losses, accuracy = engine_run("bf16-mixed", 3, seed=1)
    assert (got["precision"], got["seed"]) == ("bf16-mixed", 1)
    assert got["losses"] == losses and got["accuracy"] == accuracy

    assert events[0]["kind"] == "precision" and events[0]["precision"] == "bf16-mixed"
    assert events[0]["describe"].startswith("ampkit: precision=bf16-mixed autocast=cpu/bfloat16")
    steps = [e for e in events if e["kind"] == "log" and "loss" in e["values"]]
    assert [(e["step"], e["values"]["loss"]) for e in steps] == list(zip([1, 2, 3], losses, strict=True))
    final = events[-1]
    assert final["step"] == 3 and final["values"]["accuracy"] == accuracy and "val_loss" in final["values"]
    assert len(events) == 1 + 3 + 1  # the proof line, a loss per step, the final evaluation
    saved = json.loads((arm / script.RESULT_NAME).read_text())
    assert saved["losses"] == losses and saved["precision"] == "bf16-mixed"


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--steps", "0"], "--steps: expected an integer >= 1, got '0'"),
        (["--batch-size", "x"], "--batch-size: expected an integer >= 1, got 'x'"),
        (["--size", "huge"], "--size: invalid choice: 'huge'"),
    ],
)
def test_bad_flags_are_argparse_errors(
    script: ModuleType, capsys: pytest.CaptureFixture[str], argv: list[str], needle: str
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        script.main(argv)
    assert exit_info.value.code == 2
    assert needle in capsys.readouterr().err
