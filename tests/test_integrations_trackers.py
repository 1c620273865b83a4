"""``--log tensorboard,mlflow`` on train and compare, and the engine hooks behind it, read back with the
libraries' own readers: tensorboard's ``EventAccumulator`` and ``mlflow.search_runs``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from ampkit.cli import main

pytest.importorskip("tensorboard")
mlflow = pytest.importorskip("mlflow")
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402


def events(folder: Path) -> EventAccumulator:
    acc = EventAccumulator(str(folder))
    acc.Reload()
    return acc


def series(acc: EventAccumulator, tag: str) -> list[tuple[int, float]]:
    return [(e.step, e.value) for e in acc.Scalars(tag)]


@pytest.fixture
def store(monkeypatch: pytest.MonkeyPatch):
    """Point ``mlflow.search_runs`` at a store (MLflow 3 reads a file store only with the opt-in)."""

    def use(uri: str) -> None:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    return use


def runs_of(experiment: str) -> dict[str, object]:
    found = mlflow.search_runs(experiment_names=[experiment], output_format="list")
    return {r.info.run_name: r for r in found}


def test_compare_logs_one_tensorboard_and_mlflow_run_per_arm(tmp_path, capsys, store):
    out = tmp_path / "bf16study"
    argv = ["compare", "--size", "small", "--precisions", "fp32,bf16-mixed", "--steps", "4",
            "--warmup-steps", "1", "--eval-every", "2", "--out", str(out), "--log", "tensorboard,mlflow"]  # fmt: skip
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert f"mlflow: 2 run(s) in experiment 'bf16study' at {(out / 'mlruns').resolve().as_uri()}" in printed
    results = json.loads((out / "results.json").read_text())
    arms = {a["mode"]: a["runs"][0] for a in results["arms"]}
    assert set(arms) == {"fp32", "bf16-mixed"}

    for mode, record in arms.items():
        acc = events(out / "tensorboard" / f"{mode}-seed0")
        tags = acc.Tags()["scalars"]
        assert len(tags) >= 6, tags
        for tag in ("train/loss", "train/step_time_s", "train/lr", "train/grad_norm", "train/skipped_steps",
                    "eval/accuracy", "final/accuracy", "summary/step_time_median_s", "summary/peak_rss_bytes"):  # fmt: skip
            assert tag in tags, (mode, tag)
        loss = series(acc, "train/loss")
        assert [s for s, _ in loss] == [1, 2, 3, 4]
        assert [v for _, v in loss] == pytest.approx(record["loss_curve"], rel=1e-6)  # float32 events
        assert [s for s, _ in series(acc, "eval/accuracy")] == [2, 4]
        assert series(acc, "train/skipped_steps")[-1][1] == record["figures"]["skipped_steps"]["value"]
        energy = record["figures"]["energy_j"]["value"]  # logged only where a counter measured it
        assert ("summary/energy_j" in tags) == (energy is not None)
        assert "_hparams_/session_start_info" in acc.PluginTagToContent("hparams")

    store((out / "mlruns").resolve().as_uri())
    runs = runs_of("bf16study")
    assert set(runs) == {"fp32-seed0", "bf16-mixed-seed0"}
    client = mlflow.tracking.MlflowClient()
    for mode, record in arms.items():
        run = runs[f"{mode}-seed0"]
        assert run.info.status == "FINISHED"
        assert run.data.params["precision"] == mode
        assert run.data.params["seed"] == "0"
        assert run.data.params["steps"] == "4"
        # the final metric is results.json's, exactly
        assert run.data.metrics["final/accuracy"] == record["final"]["accuracy"]
        assert run.data.metrics["final/loss"] == record["final"]["loss"]
        summary = next(a for a in results["arms"] if a["mode"] == mode)["summary"]
        assert run.data.metrics["final/accuracy"] == summary["metric"]["value"]  # one seed: the mean
        history = client.get_metric_history(run.info.run_id, "train/loss")
        assert sorted((m.step, m.value) for m in history) == list(enumerate(record["loss_curve"], 1))
        artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert {"results.json", "report.md", "results.csv", "plots", "arm"} <= artifacts
        plots = {a.path for a in client.list_artifacts(run.info.run_id, "plots")}
        assert "plots/loss_curves.png" in plots
        local = client.download_artifacts(run.info.run_id, "results.json", str(tmp_path / mode))
        assert Path(local).read_bytes() == (out / "results.json").read_bytes()


def test_train_logs_live_with_the_engine_hooks(tmp_path, capsys, store):
    out = tmp_path / "run16"
    argv = ["train", "--size", "small", "--steps", "4", "--eval-every", "2", "--precision", "fp16-mixed",
            "--batch-size", "8", "--no-progress", "--out", str(out), "--log", "tensorboard,mlflow"]  # fmt: skip
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["trackers"][0] == f"tensorboard: {out / 'tensorboard'}"
    metrics = json.loads((out / "metrics.json").read_text())

    acc = events(out / "tensorboard")
    tags = acc.Tags()["scalars"]
    for tag in ("train/loss", "train/lr", "train/loss_scale", "train/grad_norm", "train/skipped_steps",
                "train/step_time_s", "memory/rss_bytes", "memory/peak_rss_bytes", "eval/accuracy", "final/accuracy"):  # fmt: skip
        assert tag in tags, tag
    assert [v for _, v in series(acc, "train/loss")] == pytest.approx([h["loss"] for h in metrics["history"]])
    assert [v for _, v in series(acc, "train/loss_scale")] == [h["loss_scale"] for h in metrics["history"]]
    assert [s for s, _ in series(acc, "eval/accuracy")] == [2, 4]
    assert series(acc, "final/accuracy")[0][1] == pytest.approx(metrics["final"]["accuracy"])
    assert {"_hparams_/experiment", "_hparams_/session_end_info"} <= set(acc.PluginTagToContent("hparams"))

    store((out / "mlruns").resolve().as_uri())
    (run,) = runs_of("run16").values()
    assert run.info.run_name == "fp16-mixed" and run.info.status == "FINISHED"
    assert run.data.params["precision"] == "fp16-mixed"
    lr = float(run.data.params["lr"])  # the task's default, resolved (config lr is None)
    assert metrics["config"]["lr"] is None and series(acc, "train/lr")[0][1] == pytest.approx(lr) and lr > 0
    assert series(acc, "train/skipped_steps")[-1][1] == metrics["skipped_steps"]
    assert run.data.metrics["final/accuracy"] == metrics["final"]["accuracy"]
    assert run.data.metrics["train/loss"] == metrics["history"][-1]["loss"]
    client = mlflow.tracking.MlflowClient()
    assert [a.path for a in client.list_artifacts(run.info.run_id)] == ["metrics.json"]


def test_resume_continues_the_tensorboard_run_and_tags_the_mlflow_run(tmp_path, capsys, store):
    out = tmp_path / "resumed"
    base = ["train", "--size", "small", "--precision", "fp32", "--batch-size", "8", "--no-progress",
            "--out", str(out), "--log", "tensorboard,mlflow", "--checkpoint-every", "2", "--eval-every", "1"]  # fmt: skip
    assert main([*base, "--steps", "2"]) == 0
    assert main([*base, "--steps", "4", "--resume"]) == 0
    capsys.readouterr()
    metrics = json.loads((out / "metrics.json").read_text())
    acc = events(out / "tensorboard")
    loss = series(acc, "train/loss")
    assert [s for s, _ in loss] == [1, 2, 3, 4]  # no step twice
    assert [s for s, _ in series(acc, "eval/loss")] == [1, 2, 3, 4]
    assert [v for _, v in loss] == pytest.approx([h["loss"] for h in metrics["history"]])
    store((out / "mlruns").resolve().as_uri())
    found = mlflow.search_runs(experiment_names=["resumed"], output_format="list")
    assert sorted(r.data.tags.get("ampkit.resumed_from", "-") for r in found) == ["-", "2"]
    # a new run in the folder (--overwrite) replaces the TensorBoard run
    assert main([*base, "--steps", "2", "--overwrite"]) == 0
    capsys.readouterr()
    assert [s for s, _ in series(events(out / "tensorboard"), "train/loss")] == [1, 2]
    assert len(list((out / "tensorboard").glob("events.out.tfevents.*"))) == 1


def test_a_failing_tracker_warns_once_and_training_goes_on(tmp_path, caplog):
    from ampkit.engine import TrainConfig, train
    from ampkit.integrations.trackers import TensorBoardHook

    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    hook = TensorBoardHook(blocker / "tb")
    config = TrainConfig(task="digits", precision="fp32", size="small", steps=2, batch_size=8, progress=False)
    result = train(config, hooks=[hook])
    assert len(result.history) == 2 and result.final
    warned = [r.getMessage() for r in caplog.records if "tensorboard: stopped logging" in r.getMessage()]
    assert len(warned) == 1
    assert hook.closed and blocker.read_text() == "x"


def test_api_hooks_without_an_out_folder(tmp_path, store):
    from ampkit.engine import TrainConfig, train
    from ampkit.integrations.trackers import MLflowHook, TensorBoardHook

    uri = (tmp_path / "store").as_uri()
    config = TrainConfig(task="digits", precision="fp32", size="small", steps=3, batch_size=8, progress=False)
    result = train(config, hooks=[TensorBoardHook(tmp_path / "tb"), MLflowHook(uri, "api", "mine")])
    assert [s for s, _ in series(events(tmp_path / "tb"), "train/loss")] == [1, 2, 3]
    store(uri)
    (run,) = runs_of("api").values()
    assert run.info.run_name == "mine"
    assert run.data.metrics["final/loss"] == result.final["loss"]


SCRIPT = """
import os
mode = os.environ["AMPKIT_PRECISION"]
for step in range(1, 4):
    print(f"step {step} loss {1.0 / step:.4f} accuracy {0.2 * step:.2f}", flush=True)
"""


def test_compare_of_a_command_logs_what_the_script_printed(tmp_path, capsys, store):
    script = tmp_path / "fit.py"
    script.write_text(SCRIPT)
    out = tmp_path / "cmd"
    argv = ["compare", "--precisions", "fp32,bf16-mixed", "--warmup-steps", "0", "--out", str(out),
            "--log", "tensorboard,mlflow", "--parse", r"step (?P<step>\d+) loss (?P<loss>\S+) accuracy (?P<accuracy>\S+)",
            "--", sys.executable, str(script)]  # fmt: skip
    assert main(argv) == 0
    capsys.readouterr()
    acc = events(out / "tensorboard" / "fp32-seed0")
    assert series(acc, "script/loss") == [(1, 1.0), (2, 0.5), (3, pytest.approx(0.3333))]
    assert series(acc, "final/accuracy")[0][1] == pytest.approx(0.6)
    store((out / "mlruns").resolve().as_uri())
    runs = runs_of("cmd")
    assert set(runs) == {"fp32-seed0", "bf16-mixed-seed0"}
    assert runs["bf16-mixed-seed0"].data.params["precision"] == "bf16-mixed"
    assert runs["bf16-mixed-seed0"].data.metrics["final/accuracy"] == 0.6


def test_trackers_written_from_a_finished_result(tmp_path, store):
    """``train --nproc N --log``: the ranks ran elsewhere, so the trackers come from the result."""
    from ampkit.engine import TrainConfig, train
    from ampkit.integrations.trackers import log_train_result

    out = tmp_path / "ddp"
    config = TrainConfig(
        task="digits", precision="fp32", size="small", steps=3, batch_size=8, out=out, progress=False
    )
    result = train(config)
    lines = log_train_result(("tensorboard", "mlflow"), result, out)
    assert lines[0] == f"tensorboard: {out / 'tensorboard'}" and lines[1].startswith("mlflow: file://")
    acc = events(out / "tensorboard")
    assert [v for _, v in series(acc, "train/loss")] == pytest.approx([r.loss for r in result.history])
    assert "memory/rss_bytes" not in acc.Tags()["scalars"]  # not measured after the fact: not logged
    store((out / "mlruns").resolve().as_uri())
    (run,) = runs_of("ddp").values()
    assert run.data.metrics["final/accuracy"] == result.final["accuracy"]
    assert run.data.params["precision"] == "fp32"


def test_a_failed_arm_is_a_failed_mlflow_run_with_its_reason(tmp_path, capsys, store):
    out = tmp_path / "broken"
    argv = ["compare", "--precisions", "fp32", "--out", str(out), "--log", "tensorboard,mlflow",
            "--", sys.executable, "-c", "import sys; sys.exit(3)"]  # fmt: skip
    assert main(argv) == 1
    capsys.readouterr()
    assert not (out / "tensorboard").exists()  # nothing was measured: no TensorBoard run
    store((out / "mlruns").resolve().as_uri())
    (run,) = runs_of("broken").values()
    assert run.info.status == "FAILED" and run.info.run_name == "fp32-seed0"
    assert "exited with code 3" in run.data.tags["ampkit.reason"]
    assert run.data.params["precision"] == "fp32"
