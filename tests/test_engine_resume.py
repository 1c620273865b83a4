"""``resume``: a checkpoint continues only its own run (or, with ``resume_any``, takes over the
config), a precision change starts a new segment that ``metrics.json`` reports, and the checks
happen before anything is built or written."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from ampkit.engine import RunResult, StepRecord, TrainConfig, train
from ampkit.engine.launch import run_distributed
from ampkit.engine.records import segments_from
from ampkit.engine.resume import held_for_launch
from ampkit.engine.runlock import LOCK_NAME, RunLock
from ampkit.errors import UsageError
from ampkit.hardware import device_capabilities

BASE = TrainConfig(task="digits", size="small", steps=2, batch_size=8, device="cpu", progress=False)


@pytest.fixture(autouse=True)
def _threads() -> Iterator[None]:
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-step run folder of BASE (fp32, seed 0, batch 8)."""
    out = tmp_path_factory.mktemp("resume") / "run"
    threads = torch.get_num_threads()
    try:
        train(dataclasses.replace(BASE, out=out))
    finally:
        torch.set_num_threads(threads)
    return out


@pytest.fixture
def run(source: Path, tmp_path: Path) -> Path:
    shutil.copytree(source, tmp_path / "run")
    return tmp_path / "run"


def digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def metrics(folder: Path) -> dict[str, Any]:
    return dict(json.loads((folder / "metrics.json").read_text()))


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        (
            {"seed": 1},
            "was trained with seed=0; these flags say seed=1; use the checkpoint's flags or --resume-any",
        ),
        (
            {"batch_size": 4, "accumulate": 2},
            "batch_size=8, accumulate=1; these flags say batch_size=4, accumulate=2",
        ),
        ({"steps": 1}, "is already at step 2; these flags say steps=1; use --steps 2 or more"),
        (
            {"steps": None, "epochs": 0.001},
            "is already at step 2; these flags say steps=1",
        ),  # known after build
    ],
)
def test_conflicting_resume_is_refused_before_anything_is_written(
    run: Path, change: dict[str, Any], needle: str
) -> None:
    before = digest(run)
    with pytest.raises(UsageError) as err:
        train(dataclasses.replace(BASE, out=run, resume=True, **change))
    assert str(err.value).startswith(f"--resume: {run / 'last.pt'} ") and needle in str(err.value)
    assert digest(run) == before  # no lock file left, no checkpoint or metrics rewritten


def test_resume_any_takes_the_checkpoints_config_and_matches_an_uninterrupted_run(
    run: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="ampkit"):
        train(dataclasses.replace(BASE, out=run, resume_any=True, seed=5, batch_size=4, steps=4))
    assert "ampkit: --resume-any: continuing with the checkpoint's seed=0, batch_size=8" in caplog.text
    saved = metrics(run)
    assert (saved["config"]["seed"], saved["config"]["batch_size"], saved["config"]["steps"]) == (0, 8, 4)
    assert [r["step"] for r in saved["history"]] == [1, 2, 3, 4] and saved["resumed_from"] == 2
    assert torch.load(run / "last.pt", weights_only=True)["config"]["seed"] == 0
    straight = train(dataclasses.replace(BASE, out=tmp_path / "straight", steps=4))
    ours = torch.load(run / "last.pt", weights_only=True)["model"]
    theirs = torch.load(tmp_path / "straight" / "last.pt", weights_only=True)["model"]
    assert all(torch.equal(ours[k], theirs[k]) for k in theirs)
    assert [r["loss"] for r in saved["history"]] == [r.loss for r in straight.history]


def test_precision_change_is_a_new_segment(run: Path) -> None:
    result = train(dataclasses.replace(BASE, out=run, resume=True, steps=3, precision="bf16-mixed"))
    saved = metrics(run)
    assert saved["segments"] == [
        {"precision": "fp32", "from_step": 1, "to_step": 2, "steps": 2},
        {"precision": "bf16-mixed", "from_step": 3, "to_step": 3, "steps": 1},
    ]
    assert saved["precision"] == result.precision == "bf16-mixed"
    share = saved["numerics"]["flop_share"]
    assert share["mode"] == "bf16-mixed" and share["share"] > 0.5  # was fp32's 0.0
    assert saved["describe"].startswith("ampkit: precision=bf16-mixed")
    assert saved["config"]["precision"] == "bf16-mixed"


def test_no_checkpoint_starts_fresh_and_says_so(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="ampkit"):
        result = train(dataclasses.replace(BASE, out=tmp_path / "run", resume=True))
    assert f"ampkit: no checkpoint in {tmp_path / 'run'}: starting fresh" in caplog.text
    assert result.resumed_from is None and len(result.history) == 2


def test_a_checkpoint_of_an_older_version_resumes(run: Path) -> None:
    """NumPy state as an ndarray, no segments in the result: loads, continues, segments rebuilt."""
    state = torch.load(run / "last.pt", weights_only=True)
    np.random.seed(0)
    state["rng"]["numpy"] = np.random.get_state()
    del state["result"]["segments"]
    torch.save(state, run / "last.pt")
    train(dataclasses.replace(BASE, out=run, resume=True, steps=3))
    assert metrics(run)["segments"] == [{"precision": "fp32", "from_step": 1, "to_step": 3, "steps": 3}]


def test_fallback_splits_the_run_into_segments(tmp_path: Path) -> None:
    # lr 1000: step 1 blows the weights up, fp16 steps 2 and 3 overflow and are skipped -> fallback
    config = dataclasses.replace(
        BASE,
        batch_size=16,
        steps=4,
        precision="fp16-mixed",
        lr=1000,
        on_nonfinite="fallback",
        fallback_after=2,
    )
    result = train(dataclasses.replace(config, out=tmp_path))
    target = "bf16-mixed" if device_capabilities("cpu").bf16_in_hardware else "fp32"
    assert result.fallbacks[0]["step"] == 3
    assert result.segments == [
        {"precision": "fp16-mixed", "from_step": 1, "to_step": 3, "steps": 3},
        {"precision": target, "from_step": 4, "to_step": 4, "steps": 1},
    ]
    assert metrics(tmp_path)["segments"] == result.segments
    assert segments_from(dataclasses.replace(result, segments=[])) == result.segments  # older results


def test_segments_of_a_result_without_them() -> None:
    record = StepRecord(1, 1.0, True, None, None, 0.1, 8)
    result = RunResult("t", "fp32", "", "acc", True, "samples", {}, history=[record])
    result.enter_segment("bf16-mixed", 2)
    assert result.segments == [
        {"precision": "fp32", "from_step": 1, "to_step": 1, "steps": 1},
        {"precision": "bf16-mixed", "from_step": 2, "to_step": 1, "steps": 0},
    ]
    result.enter_segment("fp32", 2)  # back before any bf16 step: the empty segment is dropped
    assert result.segments == [{"precision": "fp32", "from_step": 1, "to_step": 1, "steps": 1}]
    result.add_step(StepRecord(2, 1.0, True, None, None, 0.1, 8))
    assert result.segments == [{"precision": "fp32", "from_step": 1, "to_step": 2, "steps": 2}]


def test_launcher_checks_the_resume_before_starting_ranks(run: Path) -> None:
    config = dataclasses.replace(BASE, out=run, resume=True, seed=2, nproc=2, batch_size=8)
    before = digest(run)
    with pytest.raises(UsageError, match="trained with seed=0; these flags say seed=2"):
        run_distributed(config, timeout_s=5)
    assert digest(run) == before


def test_launcher_holds_the_folder_and_passes_a_settled_config(tmp_path: Path) -> None:
    config = dataclasses.replace(BASE, out=tmp_path / "run", resume=True, nproc=2)
    with held_for_launch(config) as settled:
        assert settled.resume is False  # nothing to resume: the ranks start fresh without looking again
        assert (tmp_path / "run" / LOCK_NAME).exists()
        with pytest.raises(UsageError, match="is in use by ampkit pid"):
            RunLock(tmp_path / "run").acquire()
    assert not (tmp_path / "run" / LOCK_NAME).exists()
