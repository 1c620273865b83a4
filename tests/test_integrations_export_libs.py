"""Each export loaded by the real library, a tiny model trained on the CPU, the dtypes compared.

For every mode a framework has on a CPU, the exported config is read back the way the framework
reads it, one training step of :class:`export_probe.Probe` runs through the framework's own
calls, and the dtypes that really ran (Linear output, Linear weight, LayerNorm weight) are
compared with ampkit's run of the same mode: equal exactly when the export is labelled ``exact``
on a CPU, different when it says ``approximate``. Accelerate, Lightning, Transformers and MMEngine
are test-only dependencies (``.[test-integrations]``); each part skips without its library.
"""

from __future__ import annotations

import functools
import json
import re
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from export_probe import Probe, ampkit_dtypes, batch, step

from ampkit.cli import main
from ampkit.integrations import export
from ampkit.precision import CANONICAL


def cpu_modes(framework: str) -> list[str]:
    """The modes ``framework`` has an equivalent for on a CPU, without FP8 backends."""
    return [mode for mode in CANONICAL if export(framework, mode, "cpu").equivalence != "none"]


def exported(
    framework: str, mode: str, capsys: pytest.CaptureFixture[str], fmt: str = "yaml"
) -> tuple[str, str]:
    """``ampkit export --config-only`` for a CPU: (stdout, stderr)."""
    argv = [
        "export",
        "--to",
        framework,
        "--precision",
        mode,
        "--device",
        "cpu",
        "--config-only",
        "--format",
        fmt,
    ]
    assert main(argv) == 0
    captured = capsys.readouterr()
    return captured.out, captured.err


def assert_label_matches_run(framework: str, mode: str, seen: Any) -> None:
    """``exact`` on a CPU if and only if the dtypes that ran are ampkit's."""
    label = export(framework, mode, "cpu").equivalence
    assert label in ("exact", "approximate")
    same = seen == ampkit_dtypes(mode)
    assert same is (label == "exact"), (
        f"{framework} {mode}: ran {seen}, ampkit {ampkit_dtypes(mode)}, label {label}"
    )


# -- Accelerate -------------------------------------------------------------------------------------
@pytest.fixture
def accelerate() -> Iterator[Any]:
    """accelerate; its process-wide AcceleratorState is reset after each use."""
    module = pytest.importorskip("accelerate")
    from accelerate.state import AcceleratorState

    yield module
    AcceleratorState._reset_state(reset_partial_state=True)


def accelerate_run(path: Path) -> Any:
    """Build the Accelerator from the config file as ``accelerate launch`` would, train one step."""
    from accelerate import Accelerator
    from accelerate.commands.config.config_args import load_config_from_file

    config = load_config_from_file(str(path))
    assert config.num_processes == 1 and config.distributed_type.value == "NO"
    accelerator = Accelerator(mixed_precision=config.mixed_precision, cpu=config.use_cpu)
    model = Probe()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    wrapped, optimizer = accelerator.prepare(model, optimizer)
    seen = step(model, wrapped, accelerator.backward)
    optimizer.step()
    return seen


@pytest.mark.parametrize("mode", cpu_modes("accelerate"))
def test_accelerate_trains_as_labelled(
    mode: str, accelerate: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str], restore_torch_flags: None
) -> None:
    out, _ = exported("accelerate", mode, capsys)
    path = tmp_path / "accelerate.yaml"
    path.write_text(out)
    assert_label_matches_run("accelerate", mode, accelerate_run(path))


def test_accelerate_config_only_fp32_runs_with_cudnn_tf32_off(
    accelerate: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str], restore_torch_flags: None
) -> None:
    torch.backends.cudnn.allow_tf32 = True  # PyTorch's default: what the old export left on
    torch.set_float32_matmul_precision("high")
    out, err = exported("accelerate", "fp32", capsys)
    path = tmp_path / "accelerate.yaml"
    path.write_text(out)
    # What the export says on stderr, applied as a user would: the script lines it names.
    lines = re.search(r"put in your script: import torch; (.*)$", err, re.M)
    assert lines is not None and "NVIDIA_TF32_OVERRIDE=0" in err
    exec("import torch\n" + lines.group(1).replace("; ", "\n"), {})
    seen = accelerate_run(path)
    assert torch.backends.cudnn.allow_tf32 is False
    assert torch.backends.cuda.matmul.allow_tf32 is False
    assert torch.get_float32_matmul_precision() == "highest"
    assert seen == ampkit_dtypes("fp32")


@pytest.mark.parametrize("mode", cpu_modes("accelerate"))
def test_accelerate_snippet_runs(mode: str, accelerate: Any, restore_torch_flags: None) -> None:
    result = export("accelerate", mode, "cpu")
    namespace: dict[str, Any] = {}
    exec(result.code, namespace)
    assert result.config is not None
    assert namespace["accelerator"].mixed_precision == result.config["mixed_precision"]
    assert torch.backends.cudnn.allow_tf32 is (mode == "tf32")


# -- Lightning --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def fabric_cls() -> Any:
    pytest.importorskip("lightning")
    from lightning.fabric import Fabric

    return Fabric


@pytest.mark.parametrize("mode", cpu_modes("lightning"))
def test_lightning_fabric_trains_as_labelled(
    mode: str, fabric_cls: Any, capsys: pytest.CaptureFixture[str], restore_torch_flags: None
) -> None:
    yaml = pytest.importorskip("yaml")
    trainer = yaml.safe_load(exported("lightning", mode, capsys)[0])["trainer"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fabric = fabric_cls(devices=1, **trainer)
    if trainer["precision"] == "16-mixed":  # as the CPU note says: swapped for bf16-mixed, with a warning
        assert any("not supported on CPU" in str(w.message) for w in caught)
        assert fabric._precision.precision == "bf16-mixed"
    model = Probe()
    wrapped, optimizer = fabric.setup(model, torch.optim.SGD(model.parameters(), lr=0.1))
    seen = step(model, wrapped, fabric.backward)
    optimizer.step()
    assert_label_matches_run("lightning", mode, seen)


def test_lightning_snippet_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, restore_torch_flags: None
) -> None:
    pytest.importorskip("lightning")
    monkeypatch.chdir(tmp_path)  # Trainer may create lightning_logs/ in the working directory
    namespace: dict[str, Any] = {}
    exec(export("lightning", "bf16-true", "cpu").code, namespace)
    assert namespace["trainer"].precision == namespace["fabric"]._precision.precision == "bf16-true"
    assert torch.backends.cudnn.allow_tf32 is False


# -- Hugging Face Transformers ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def transformers() -> Any:
    return pytest.importorskip("transformers")


def test_transformers_fields_exist_and_the_rest_is_named(
    transformers: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    import dataclasses

    fields = {f.name for f in dataclasses.fields(transformers.TrainingArguments)}
    named_none = []
    for mode in CANONICAL:
        for device in ("cuda", "cpu"):
            result = export("transformers", mode, device)
            if result.config is None:
                assert result.notes[0].startswith(f"Transformers has no equivalent of ampkit's {mode}")
                named_none.append(mode)
            else:
                assert set(result.config) <= fields, (
                    f"{set(result.config) - fields} not TrainingArguments fields"
                )
    assert sorted(set(named_none)) == sorted({"fp64", "bf16-true", "fp16-true", "fp8-mixed", "int8-qat"})
    assert main(["export", "--to", "transformers", "--precision", "bf16-true"]) == 0
    assert "Transformers has no equivalent of ampkit's bf16-true." in capsys.readouterr().out


@pytest.mark.parametrize("mode", cpu_modes("transformers"))
def test_transformers_trainer_trains_as_labelled(
    mode: str,
    transformers: Any,
    accelerate: Any,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    restore_torch_flags: None,
) -> None:
    out, _ = exported("transformers", mode, capsys, fmt="json")
    fields = json.loads(out)
    parsed = transformers.HfArgumentParser(transformers.TrainingArguments).parse_dict(
        {**fields, "output_dir": str(tmp_path)}
    )[0]
    assert (parsed.bf16, parsed.fp16, parsed.tf32) == (fields["bf16"], fields["fp16"], fields.get("tf32"))
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path),
        max_steps=1,
        per_device_train_batch_size=2,
        report_to=[],
        save_strategy="no",
        logging_strategy="no",
        disable_tqdm=True,
        **fields,
    )
    x, y = batch()
    model = Probe()
    trainer = transformers.Trainer(
        model=model, args=args, train_dataset=[{"x": x[i], "labels": y[i]} for i in range(2)]
    )
    trainer.train()
    assert_label_matches_run("transformers", mode, model.seen)


@pytest.mark.parametrize("mode", cpu_modes("transformers"))
def test_transformers_snippet_runs(
    mode: str, transformers: Any, accelerate: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # the snippet's output_dir="out"
    result = export("transformers", mode, "cpu")
    namespace: dict[str, Any] = {}
    exec(result.code, namespace)
    assert result.config is not None
    args = namespace["args"]
    assert {key: getattr(args, key) for key in result.config} == result.config


# -- MMEngine ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def mmengine() -> Any:
    return pytest.importorskip("mmengine.optim")


def mmengine_run(optim: Any, optim_wrapper: dict[str, Any]) -> Any:
    model = Probe()
    wrapper = optim.build_optim_wrapper(model, {**optim_wrapper, "optimizer": {"type": "SGD", "lr": 0.1}})
    x, y = batch()
    with wrapper.optim_context(model):
        out = model(x)
    wrapper.update_params(torch.nn.functional.mse_loss(out.float(), y))
    return model.seen


@pytest.mark.parametrize("mode", cpu_modes("mmengine"))
def test_mmengine_trains_as_labelled(mode: str, mmengine: Any, capsys: pytest.CaptureFixture[str]) -> None:
    yaml = pytest.importorskip("yaml")
    config = yaml.safe_load(exported("mmengine", mode, capsys)[0])
    seen = mmengine_run(mmengine, config["optim_wrapper"])
    assert_label_matches_run("mmengine", mode, seen)


@pytest.mark.parametrize("mode", ["bf16-mixed", "fp16-mixed"])
def test_mmengine_mixed_is_none_on_cpu_because_it_asserts_a_gpu(mode: str, mmengine: Any) -> None:
    assert export("mmengine", mode, "cpu").equivalence == "none"
    config = export("mmengine", mode, "cuda").config
    assert config is not None
    with pytest.raises(AssertionError, match="only available training on gpu"):
        mmengine_run(mmengine, config["optim_wrapper"])


def test_mmengine_gpu_configs_scale_as_ampkit(mmengine: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The cuda rows, built on the CPU with MMEngine's GPU assertion lifted and its CUDA GradScaler
    swapped for the same class on the CPU: bf16 builds no active scaler and autocasts as ampkit,
    fp16 gets PyTorch's default scaler, as ampkit's."""
    from mmengine.optim.optimizer import amp_optimizer_wrapper as amp

    monkeypatch.setattr(amp, "is_cuda_available", lambda: True)
    monkeypatch.setattr(amp, "GradScaler", functools.partial(torch.amp.GradScaler, "cpu"))
    models, wrappers = {}, {}
    for mode in ("bf16-mixed", "fp16-mixed"):
        config = export("mmengine", mode, "cuda").config
        assert config is not None
        optimizer = {"type": "SGD", "lr": 0.1}
        models[mode] = Probe()
        wrappers[mode] = mmengine.build_optim_wrapper(
            models[mode], {**config["optim_wrapper"], "optimizer": optimizer}
        )
        assert isinstance(wrappers[mode], amp.AmpOptimWrapper)
    bf16, fp16 = wrappers["bf16-mixed"], wrappers["fp16-mixed"]
    assert bf16.cast_dtype == torch.bfloat16 and bf16.loss_scaler.is_enabled() is False
    assert fp16.cast_dtype == torch.float16 and fp16.loss_scaler.is_enabled()
    assert fp16.loss_scaler.get_scale() == 2.0**16 and fp16.loss_scaler.get_growth_interval() == 2000
    # optim_context is autocast(dtype=cast_dtype) (amp_optimizer_wrapper.py); mmengine.runner, which
    # it imports for that, needs OpenCV, which mmengine-lite leaves out: the same autocast by hand.
    model = models["bf16-mixed"]
    with torch.autocast("cpu", dtype=bf16.cast_dtype):
        out = model(batch()[0])
    bf16.update_params(torch.nn.functional.mse_loss(out.float(), batch()[1]))
    assert model.seen == ampkit_dtypes("bf16-mixed")
