"""``ampkit export``: the mode x framework x device table, TF32 in every output form, the CLI.

The frameworks themselves are test-only dependencies (``pip install -e ".[test-integrations]"``);
the tests that load exports in them live in tests/test_integrations_export_*.py and skip without
them. This file needs none of them except where it says ``importorskip``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from ampkit.cli import main
from ampkit.errors import UsageError
from ampkit.integrations import DEVICES, EXPORTERS, FRAMEWORKS, device_type, export, render, to_yaml
from ampkit.precision import CANONICAL, MODES, PrecisionError

AMP_BF16 = {"type": "AmpOptimWrapper", "dtype": "bfloat16", "loss_scale": {"enabled": False}}
AMP_FP16 = {"type": "AmpOptimWrapper", "dtype": "float16", "loss_scale": "dynamic"}
DS_OFF = {"fp16": {"enabled": False}, "bf16": {"enabled": False}, "torch_autocast": {"enabled": False}}
DS_BF16 = {
    "torch_autocast": {"enabled": True, "dtype": "bfloat16"},
    "fp16": {"enabled": False},
    "bf16": {"enabled": False},
}
DS_FP16 = {
    "torch_autocast": {"enabled": True, "dtype": "float16"},
    "fp16": {"enabled": False},
    "bf16": {"enabled": False},
}
DS_BF16_TRUE = {
    "bf16": {"enabled": True, "bf16_master_weights_and_grads": True, "bf16_optimizer_states": True},
    "fp16": {"enabled": False},
    "torch_autocast": {"enabled": False},
    "zero_optimization": {"stage": 1},
}
HF_OFF = {"bf16": False, "fp16": False}
E, A, N = "exact", "approximate", "none"

#: (framework, mode) -> (label on cuda, label on cpu, the framework's value; None when it has none).
TABLE: dict[tuple[str, str], tuple[str, str, Any]] = {
    ("accelerate", "fp64"): (N, N, None),
    ("accelerate", "fp32"): (E, E, "no"),
    ("accelerate", "tf32"): (E, E, "no"),
    ("accelerate", "bf16-mixed"): (E, E, "bf16"),
    ("accelerate", "fp16-mixed"): (E, A, "fp16"),  # CPU: accepted, but no autocast and no scaler
    ("accelerate", "bf16-true"): (N, N, None),
    ("accelerate", "fp16-true"): (N, N, None),
    ("accelerate", "fp8-mixed"): (A, N, "fp8"),
    ("accelerate", "int8-qat"): (N, N, None),
    ("lightning", "fp64"): (E, E, "64-true"),
    ("lightning", "fp32"): (E, E, "32-true"),
    ("lightning", "tf32"): (E, E, "32-true"),
    ("lightning", "bf16-mixed"): (E, E, "bf16-mixed"),
    ("lightning", "fp16-mixed"): (E, A, "16-mixed"),  # CPU: swapped for bf16-mixed
    ("lightning", "bf16-true"): (A, A, "bf16-true"),
    ("lightning", "fp16-true"): (A, A, "16-true"),
    ("lightning", "fp8-mixed"): (A, N, "transformer-engine"),
    ("lightning", "int8-qat"): (N, N, None),
    ("mmengine", "fp64"): (N, N, None),
    ("mmengine", "fp32"): (E, E, {"type": "OptimWrapper"}),
    ("mmengine", "tf32"): (E, E, {"type": "OptimWrapper"}),
    ("mmengine", "bf16-mixed"): (E, N, AMP_BF16),  # CPU: AmpOptimWrapper asserts a GPU
    ("mmengine", "fp16-mixed"): (E, N, AMP_FP16),
    ("mmengine", "bf16-true"): (N, N, None),
    ("mmengine", "fp16-true"): (N, N, None),
    ("mmengine", "fp8-mixed"): (N, N, None),
    ("mmengine", "int8-qat"): (N, N, None),
    ("deepspeed", "fp64"): (N, N, None),
    ("deepspeed", "fp32"): (E, E, DS_OFF),
    ("deepspeed", "tf32"): (E, E, DS_OFF),
    ("deepspeed", "bf16-mixed"): (E, E, DS_BF16),
    ("deepspeed", "fp16-mixed"): (E, E, DS_FP16),
    ("deepspeed", "bf16-true"): (A, A, DS_BF16_TRUE),
    ("deepspeed", "fp16-true"): (N, N, None),
    ("deepspeed", "fp8-mixed"): (N, N, None),
    ("deepspeed", "int8-qat"): (N, N, None),
    ("transformers", "fp64"): (N, N, None),
    ("transformers", "fp32"): (E, E, HF_OFF),
    ("transformers", "tf32"): (E, E, HF_OFF),
    ("transformers", "bf16-mixed"): (E, E, {"bf16": True, "fp16": False}),
    ("transformers", "fp16-mixed"): (E, A, {"bf16": False, "fp16": True}),  # CPU: runs fp32
    ("transformers", "bf16-true"): (N, N, None),
    ("transformers", "fp16-true"): (N, N, None),
    ("transformers", "fp8-mixed"): (N, N, None),
    ("transformers", "int8-qat"): (N, N, None),
    ("keras", "fp64"): (E, E, "float64"),
    ("keras", "fp32"): (E, E, "float32"),
    ("keras", "tf32"): (E, E, "float32"),
    ("keras", "bf16-mixed"): (A, A, "mixed_bfloat16"),  # no autocast op lists: norms/softmax in bf16
    ("keras", "fp16-mixed"): (A, A, "mixed_float16"),
    ("keras", "bf16-true"): (A, A, "bfloat16"),
    ("keras", "fp16-true"): (A, A, "float16"),
    ("keras", "fp8-mixed"): (N, N, None),
    ("keras", "int8-qat"): (N, N, None),
}
#: (framework, mode, device) for every mode that exists now.
LIVE = sorted((fw, mode, dev) for fw, mode in TABLE if mode in CANONICAL for dev in DEVICES)
#: Rows with an equivalent, per device.
HAS = [(fw, mode, dev) for fw, mode, dev in LIVE if TABLE[fw, mode][DEVICES.index(dev)] != N]


def framework_value(framework: str, config: dict[str, Any] | None) -> Any:
    """The value in each framework's config payload that carries the precision."""
    if config is None:
        return None
    return {
        "accelerate": lambda c: c["mixed_precision"],
        "lightning": lambda c: c["trainer"]["precision"],
        "mmengine": lambda c: c["optim_wrapper"],
        "deepspeed": lambda c: c,
        "transformers": lambda c: {k: v for k, v in c.items() if k in ("bf16", "fp16")},
        "keras": lambda c: c["config"]["name"],
    }[framework](config)


# -- the table --------------------------------------------------------------------------------------
def test_table_covers_every_mode_and_framework() -> None:
    assert {fw for fw, _ in TABLE} == set(FRAMEWORKS) == set(EXPORTERS)
    for framework in FRAMEWORKS:
        untested = set(CANONICAL) - {mode for fw, mode in TABLE if fw == framework}
        assert not untested, f"add the expected {framework} answer for {sorted(untested)} to TABLE"
    for name, cls in EXPORTERS.items():
        missing = set(CANONICAL) - set(cls.rows)
        assert not missing, f"add a row for {sorted(missing)} to integrations/exporters/{name}.py"


@pytest.mark.parametrize(("framework", "mode", "device"), LIVE)
def test_mapping(framework: str, mode: str, device: str) -> None:
    cuda, cpu, value = TABLE[framework, mode]
    label = cuda if device == "cuda" else cpu
    result = export(framework, mode, device)
    assert (result.framework, result.precision, result.device) == (framework, mode, device)
    assert result.equivalence == label
    assert framework_value(framework, result.config) == (None if label == N else value)
    if label == N:
        assert result.code == "" and result.tf32 is None
        assert result.notes[0].startswith(
            f"{EXPORTERS[framework].title} has no equivalent of ampkit's {mode}"
        )
    else:
        compile(result.code, f"<{framework} {mode}>", "exec")  # every printed snippet is valid Python


def test_device_defaults_to_this_machine_and_cuda_n_is_cuda() -> None:
    here = "cuda" if torch.cuda.is_available() else "cpu"
    assert export("accelerate", "fp16").device == here == device_type(None)
    assert device_type("cuda:1") == "cuda" and device_type(" CPU ") == "cpu"


@pytest.mark.parametrize("device", ["mps", "xpu", "tpu", "cpu:0", "cuda:x", ""])
def test_device_without_labels_is_refused(device: str) -> None:
    with pytest.raises(UsageError, match=r"no export labels for it; valid: cuda, cpu"):
        export("accelerate", "fp16", device)


# -- TF32: in every output form ------------------------------------------------------------------
@pytest.mark.parametrize(("framework", "mode", "device"), HAS)
def test_tf32_is_carried_into_every_output_form(
    framework: str, mode: str, device: str, capsys: pytest.CaptureFixture[str]
) -> None:
    result = export(framework, mode, device)
    want = MODES[mode].tf32  # off in every mode but tf32, mixed and true-half included
    assert result.tf32 is not None and result.tf32.enabled is want
    record = json.loads(render(result, "json"))
    assert record["tf32"]["enabled"] is want and record["device"] == device
    argv = ["export", "--to", framework, "--precision", mode, "--device", device, "--config-only"]
    assert main(argv) == 0
    out, err = capsys.readouterr()
    if result.tf32.field is not None:  # Hugging Face: the config field itself
        config = json.loads(out)
        if want and device == "cpu":  # TrainingArguments(tf32=True) raises without an Ampere GPU
            assert "tf32" not in config and "leaves tf32 unset" in err
        else:
            assert config[result.tf32.field] is want
        assert f"tf32={want}" in result.code or (want and device == "cpu")
    else:  # no such field: the stderr note gives the environment line and the script lines
        env = "NVIDIA_TF32_OVERRIDE=0" if not want else "TORCH_ALLOW_TF32_CUBLAS_OVERRIDE=1"
        assert f"has no TF32 field and ampkit runs this mode with TF32 {'on' if want else 'off'}" in err
        assert env in err and f"torch.backends.cudnn.allow_tf32 = {want}" in err
        assert f"torch.backends.cudnn.allow_tf32 = {want}" in result.code
        assert env in render(result)  # the text form names the environment line too


@pytest.mark.parametrize(("framework", "mode", "device"), [row for row in HAS if row[0] != "transformers"])
def test_tf32_lines_set_the_flags_the_mode_defines(
    framework: str, mode: str, device: str, restore_torch_flags: None
) -> None:
    torch.backends.cudnn.allow_tf32 = not MODES[mode].tf32  # start from the wrong state
    result = export(framework, mode, device)
    assert result.tf32 is not None
    exec("import torch\n" + "\n".join(result.tf32.python), {})
    want = MODES[mode].tf32
    assert torch.backends.cuda.matmul.allow_tf32 is want
    assert torch.backends.cudnn.allow_tf32 is want


# -- spellings and errors ---------------------------------------------------------------------------
def test_any_precision_spelling_and_framework_alias() -> None:
    assert export("Lightning", "16", "cuda") == export("lightning", "fp16-mixed", "cuda")
    assert export("pl", "bf16", "cpu") == export("fabric", "bf16-mixed", "cpu")
    assert export("accelerate", "no").precision == "fp32"
    assert export("DS", "16-true").framework == "deepspeed"
    assert export("hf", "bf16").framework == "transformers"


def test_unknown_framework_and_precision() -> None:
    with pytest.raises(UsageError, match=r"unknown framework 'jax'; valid: accelerate, lightning, mmengine"):
        export("jax", "bf16")
    with pytest.raises(PrecisionError, match="unknown precision"):
        export("accelerate", "fp12")


def test_unmapped_mode_is_reported_not_guessed() -> None:
    result = EXPORTERS["lightning"]().export("fp4-someday")
    assert result.equivalence == "none" and result.config is None
    assert "ampkit has no Lightning mapping for fp4-someday yet." in result.notes


def test_exports_do_not_share_state_with_the_table() -> None:
    for framework in ("deepspeed", "mmengine"):
        result = export(framework, "bf16-mixed", "cuda")
        assert result.config is not None
        result.config.clear()
        assert export(framework, "bf16-mixed", "cuda").config


# -- rendering --------------------------------------------------------------------------------------
def test_yaml_keeps_no_a_string() -> None:
    yaml = pytest.importorskip("yaml")
    text = to_yaml({"mixed_precision": "no", "n": 1, "on": True, "x": None, "l": ["a", 2], "e": {}})
    assert yaml.safe_load(text) == {
        "mixed_precision": "no",
        "n": 1,
        "on": True,
        "x": None,
        "l": ["a", 2],
        "e": {},
    }


@pytest.mark.parametrize(("framework", "mode", "device"), LIVE)
def test_json_and_yaml_records_round_trip(framework: str, mode: str, device: str) -> None:
    yaml = pytest.importorskip("yaml")
    result = export(framework, mode, device)
    assert json.loads(render(result, "json")) == result.to_dict()
    assert yaml.safe_load(render(result, "yaml")) == result.to_dict()


def test_text_output() -> None:
    text = render(export("deepspeed", "fp16-mixed", "cuda"))
    assert text.startswith("ampkit precision fp16-mixed -> deepspeed on cuda: exact\n")
    assert '"torch_autocast": {' in text and "deepspeed.initialize" in text and "notes:" in text
    assert "ds_config.update" not in text  # the old whole-block replacement is gone
    assert 'loss_scale_window": 2000' in text  # the native alternative, set to ampkit's scaler
    none = render(export("accelerate", "bf16-true", "cuda"))
    assert "Accelerate has no equivalent of ampkit's bf16-true." in none and "# Python" not in none


# -- CLI --------------------------------------------------------------------------------------------
def test_cli_text(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export", "--to", "lightning", "--precision", "bf16", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("ampkit precision bf16-mixed -> lightning on cpu: exact")
    assert 'Trainer(accelerator="cpu", precision="bf16-mixed")' in out


def test_cli_labels_per_device(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export", "--to", "accelerate", "--precision", "fp16", "--device", "cuda"]) == 0
    assert "-> accelerate on cuda: exact" in capsys.readouterr().out
    assert main(["export", "--to", "accelerate", "--precision", "fp16", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "-> accelerate on cpu: approximate" in out and "training runs in fp32" in out


def test_cli_says_plainly_when_there_is_none(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export", "--to", "mmengine", "--precision", "fp16-true"]) == 0
    assert "MMEngine has no equivalent of ampkit's fp16-true." in capsys.readouterr().out
    argv = ["export", "--to", "mmengine", "--precision", "fp16-true", "--config-only", "--device", "cuda"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "it has: fp32, tf32, bf16-mixed, fp16-mixed on cuda" in err[0]
    argv = ["export", "--to", "mmengine", "--precision", "bf16", "--config-only", "--device", "cpu"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert (
        len(err) == 1 and "no equivalent of ampkit's bf16-mixed on a CPU; it has: fp32, tf32 on cpu" in err[0]
    )


def test_cli_errors_are_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export", "--to", "jax", "--precision", "bf16"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "ampkit export: error: unknown framework 'jax'; valid: "
        "accelerate, lightning, mmengine, deepspeed, transformers, keras"
    ]
    assert main(["export", "--to", "lightning", "--precision", "fp12"]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


@pytest.mark.parametrize("framework", ["deepspeed", "transformers", "keras"])
def test_cli_json_configs(framework: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(["export", "--to", framework, "--precision", "bf16", "--config-only", "--device", "cuda"]) == 0
    )
    captured = capsys.readouterr()
    assert json.loads(captured.out) == export(framework, "bf16", "cuda").config
    assert "ampkit export: note: " in captured.err


def test_cli_out_writes_the_file_atomically(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "accelerate.yaml"
    target.write_text("old\n")
    argv = ["export", "--to", "accelerate", "--precision", "fp32", "--config-only", "--out", str(target)]
    assert main([*argv, "--device", "cpu"]) == 0
    captured = capsys.readouterr()
    assert captured.out == "" and f"wrote {target}" in captured.err
    assert 'mixed_precision: "no"' in target.read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["accelerate.yaml"]  # no temp file left
