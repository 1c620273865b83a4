"""The ct task: cached fp16 shards -> float32 preprocessing -> training under the precision switch."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from ampkit.tasks import TaskSpec, build_task
from ampkit.tasks.ct import SIZES


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("AMPKIT_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_small_task_builds_its_shards_once_and_batches_are_pure(cache: Path) -> None:
    spec = TaskSpec(seed=3, batch_size=8, size="small")
    task = build_task("ct", spec)
    (folder,) = cache.iterdir()
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["total_samples"] == SIZES["small"].volumes
    assert manifest["dtype_counts"] == {"float16": SIZES["small"].volumes}  # the guide's fp16 storage
    stamp = (folder / "manifest.json").stat().st_mtime_ns

    x, y = task.train_batch(5)
    side = SIZES["small"].side
    assert x.shape == (8, 1, side, side, side) and x.dtype == torch.float32
    assert float(x.min()) >= -1.0 and float(x.max()) <= 1.0  # clipped HU window mapped to [-1, 1]
    assert y.dtype == torch.int64 and task.samples_per_epoch == 64

    again = build_task("ct", spec)  # second build reuses the cache
    assert (folder / "manifest.json").stat().st_mtime_ns == stamp
    x2, y2 = again.train_batch(5)
    assert torch.equal(x, x2) and torch.equal(y, y2)
    assert not torch.equal(task.train_batch(6)[1], y) or not torch.equal(task.train_batch(6)[0], x)

    evals = list(task.eval_batches())
    assert sum(len(t) for _, t in evals) == 16
    assert all(torch.equal(a[0], b[0]) for a, b in zip(evals, task.eval_batches()))


def test_one_epoch_visits_every_training_sample_once(cache: Path) -> None:
    task = build_task("ct", TaskSpec(seed=0, batch_size=16, size="small"))
    xs = torch.cat([task.train_batch(i)[0] for i in range(4)])  # 64 training samples, 4 batches
    assert len({v.numpy().tobytes() for v in xs}) == 64


def test_model_trains_under_bf16_autocast(cache: Path) -> None:
    task = build_task("ct", TaskSpec(seed=1, batch_size=8, size="small"))
    opt = torch.optim.AdamW(task.model.parameters(), lr=task.default_lr)
    x, y = task.train_batch(0)
    losses = []
    for _ in range(8):  # fit one batch: the data path feeds a trainable signal
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = task.model(x)
        loss = task.loss_fn(out.float(), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]


def test_cli_train_ct_bf16_mixed(cache: Path, tmp_path: Path) -> None:
    from ampkit.cli import main

    out = tmp_path / "run"
    argv = ["train", "--task", "ct", "--size", "small", "--precision", "bf16-mixed", "--steps", "20"]
    assert main([*argv, "--batch-size", "8", "--out", str(out), "--no-progress"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["precision"] == "bf16-mixed" and metrics["task"] == "ct"
    assert len(metrics["history"]) == 20 and metrics["skipped_steps"] == 0
    assert 0.0 <= metrics["final"]["accuracy"] <= 1.0
    assert (cache / "ct-phantoms-80x16-fp16-v1" / "manifest.json").is_file()
