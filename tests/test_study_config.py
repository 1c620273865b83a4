"""Study configuration: TOML experiments, precedence, USE_AMP, and which modes `auto` runs or skips."""

from __future__ import annotations

import pytest
from conftest import A100, CPU_BF16, CPU_PLAIN, H100, V100

from ampkit.cli import build_parser
from ampkit.cli.compare import experiments_from_args
from ampkit.errors import UsageError
from ampkit.study import Experiment, load_study, plan_arms, precisions_from_env
from ampkit.study.runner import require_runnable

STUDY = """
[defaults]
task = "digits"
steps = 30
overrides = { batch_size = 32 }

[experiments.baseline]
precisions = ["fp32", "bf16"]
seeds = [0, 1]

[experiments.loss_weight]
precisions = "auto"
overrides = { lr = 0.01 }

[experiments.amp]
warmup_steps = 5
"""


def _by_mode(plans):  # type: ignore[no-untyped-def]
    return {p.mode: p for p in plans}


def test_toml_experiments_merge_defaults_and_canonicalise(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "study.toml"
    path.write_text(STUDY)
    exps = load_study(path)
    assert list(exps) == ["baseline", "loss_weight", "amp"]
    base = exps["baseline"]
    assert base.precisions == ("fp32", "bf16-mixed") and base.seeds == (0, 1) and base.steps == 30
    assert base.overrides == {"batch_size": 32}
    assert exps["loss_weight"].precisions is None  # auto
    assert exps["loss_weight"].overrides == {"batch_size": 32, "lr": 0.01}
    cfg = base.train_config("bf16-mixed", 1)
    assert (cfg.precision, cfg.seed, cfg.steps, cfg.batch_size, cfg.out) == ("bf16-mixed", 1, 30, 32, None)
    # USE_AMP fills in only where no precisions are named
    exps = load_study(path, default_precisions=("fp32", "fp16-mixed"))
    assert exps["amp"].precisions == ("fp32", "fp16-mixed")
    assert exps["loss_weight"].precisions is None and exps["baseline"].precisions == ("fp32", "bf16-mixed")


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("[experiments.x]\nprecisions = ['fp31']", "unknown precision"),
        ("[experiments.x]\nsteep = 3", "unknown keys"),
        ("[experiments.x]\noverrides = { seed = 3 }", "not allowed"),
        ("[experiments.x]\nsteps = 5\nwarmup_steps = 5", "warmup_steps"),
        ("[defaults]\nsteps = 5", "no \\[experiments"),
        ("[experiments.x\n", "--config"),
    ],
)
def test_bad_study_files_are_one_line_errors(tmp_path, text, match) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(UsageError, match=match):
        load_study(path)


def test_use_amp_means_fp32_versus_the_amp_mode() -> None:
    assert precisions_from_env({}, bf16_in_hardware=True) is None
    assert precisions_from_env({"USE_AMP": "1"}, bf16_in_hardware=True) == ("fp32", "bf16-mixed")
    gpu_without_bf16 = precisions_from_env({"USE_AMP": "1"}, bf16_in_hardware=False, device_type="cuda")
    assert gpu_without_bf16 == ("fp32", "fp16-mixed")
    assert precisions_from_env({"USE_AMP": "1"}, bf16_in_hardware=False, device_type="cpu") == (
        "fp32",
        "bf16-mixed",
    )
    assert precisions_from_env({"USE_AMP": "1", "AMP_DTYPE": "fp16"}, bf16_in_hardware=True) == (
        "fp32",
        "fp16-mixed",
    )


def test_cli_flags_override_the_study_file_and_only_picks_one(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("USE_AMP", "1")
    monkeypatch.setenv("AMP_DTYPE", "bf16")
    path = tmp_path / "study.toml"
    path.write_text(STUDY)
    args = build_parser().parse_args(
        [
            "compare",
            "--config",
            str(path),
            "--only",
            "amp",
            "--steps",
            "12",
            "--batch-size",
            "16",
            "--seeds",
            "3",
        ]
    )
    exps = experiments_from_args(args)
    assert list(exps) == ["amp"]
    amp = exps["amp"]
    assert (amp.steps, amp.warmup_steps, amp.seeds, amp.overrides["batch_size"]) == (12, 5, (3,), 16)
    assert amp.precisions == ("fp32", "bf16-mixed")  # USE_AMP=1
    args = build_parser().parse_args(["compare", "--config", str(path), "--only", "nope"])
    with pytest.raises(UsageError, match="valid: baseline, loss_weight, amp"):
        experiments_from_args(args)
    monkeypatch.delenv("USE_AMP")
    exp = experiments_from_args(build_parser().parse_args(["compare", "--precisions", "32,bf16-true"]))[
        "compare"
    ]
    assert exp.precisions == ("fp32", "bf16-true") and exp.task == "digits" and exp.steps == 170


def test_gpus_that_cannot_share_the_batch_are_refused_before_any_arm_runs() -> None:
    require_runnable(Experiment(gpus=2, overrides={"device": "cpu"}))  # 64 splits over 2 processes
    with pytest.raises(UsageError, match=r"--gpus 3: .*split evenly"):
        require_runnable(Experiment(gpus=3, overrides={"device": "cpu"}))


def test_auto_on_a_bf16_cpu_runs_fp32_and_bf16_and_skips_the_rest_with_reasons() -> None:
    plans = _by_mode(plan_arms(None, CPU_BF16))
    assert next(iter(plans)) == "fp32"
    for mode in ("fp32", "bf16-mixed", "bf16-true"):
        assert plans[mode].run, mode
    assert "compute capability >= 8.0" in (plans["tf32"].reason or "")
    assert "no fp16 arithmetic" in (plans["fp16-mixed"].reason or "")
    assert "no fp16 arithmetic" in (plans["fp16-true"].reason or "")
    assert not plans["fp64"].run and "--precisions" in (plans["fp64"].reason or "")


def test_auto_follows_the_device() -> None:
    plain = _by_mode(plan_arms(None, CPU_PLAIN))
    assert not plain["bf16-mixed"].run and "bf16" in (plain["bf16-mixed"].reason or "")
    v100 = _by_mode(plan_arms(None, V100))
    assert v100["fp16-mixed"].run and not v100["bf16-mixed"].run and not v100["tf32"].run
    for gpu in (A100, H100):
        plans = _by_mode(plan_arms(None, gpu))
        assert all(plans[m].run for m in ("fp32", "tf32", "bf16-mixed", "fp16-mixed", "bf16-true"))


def test_named_modes_run_with_their_warning_but_impossible_ones_are_skipped() -> None:
    plans = _by_mode(plan_arms(("bf16-mixed", "tf32", "fp32"), CPU_BF16))
    assert list(plans) == ["fp32", "bf16-mixed", "tf32"]  # fp32 first: the baseline
    assert plans["tf32"].run and "runs exactly as fp32" in plans["tf32"].warnings[0]
    v100 = _by_mode(plan_arms(("fp32", "bf16-mixed"), V100))
    assert not v100["bf16-mixed"].run and "compute capability" in (v100["bf16-mixed"].reason or "")


def test_the_example_study_file_loads() -> None:
    from pathlib import Path

    exps = load_study(Path(__file__).parent.parent / "examples" / "study.toml")
    assert list(exps) == ["baseline", "seeds", "loss_weight", "amp"]
    assert exps["seeds"].target_metric == 0.98 and exps["seeds"].eval_every == 10
    assert exps["amp"].task == "tinygpt" and exps["amp"].precisions is None
