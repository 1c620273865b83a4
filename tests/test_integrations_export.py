"""``ampkit export``: the mode x framework table, the renderers, the CLI, and the real libraries.

Accelerate and Lightning are test-only dependencies (``pip install -e ".[test-integrations]"``);
without them those tests skip and the rest still run.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from typing import Any

import pytest
import torch

from ampkit.cli import main
from ampkit.errors import UsageError
from ampkit.integrations import EXPORTERS, FRAMEWORKS, export, render, to_yaml
from ampkit.precision import CANONICAL, INITIAL_LOSS_SCALE, MODES, PrecisionError

AMP_BF16 = {"type": "AmpOptimWrapper", "dtype": "bfloat16", "loss_scale": "dynamic"}
AMP_FP16 = {"type": "AmpOptimWrapper", "dtype": "float16", "loss_scale": "dynamic"}
DS_OFF = {"fp16": {"enabled": False}, "bf16": {"enabled": False}}
DS_BF16_TRUE = {
    "bf16": {"enabled": True, "bf16_master_weights_and_grads": True, "bf16_optimizer_states": True},
    "zero_optimization": {"stage": 1},
}

#: (framework, mode) -> (equivalence, the framework's value; None when it has none).
TABLE: dict[tuple[str, str], tuple[str, Any]] = {
    ("accelerate", "fp64"): ("none", None),
    ("accelerate", "fp32"): ("exact", "no"),
    ("accelerate", "tf32"): ("exact", "no"),
    ("accelerate", "bf16-mixed"): ("exact", "bf16"),
    ("accelerate", "fp16-mixed"): ("exact", "fp16"),
    ("accelerate", "bf16-true"): ("none", None),
    ("accelerate", "fp16-true"): ("none", None),
    ("lightning", "fp64"): ("exact", "64-true"),
    ("lightning", "fp32"): ("exact", "32-true"),
    ("lightning", "tf32"): ("exact", "32-true"),
    ("lightning", "bf16-mixed"): ("exact", "bf16-mixed"),
    ("lightning", "fp16-mixed"): ("exact", "16-mixed"),
    ("lightning", "bf16-true"): ("approximate", "bf16-true"),
    ("lightning", "fp16-true"): ("approximate", "16-true"),
    ("mmengine", "fp64"): ("none", None),
    ("mmengine", "fp32"): ("exact", {"type": "OptimWrapper"}),
    ("mmengine", "tf32"): ("exact", {"type": "OptimWrapper"}),
    ("mmengine", "bf16-mixed"): ("exact", AMP_BF16),
    ("mmengine", "fp16-mixed"): ("exact", AMP_FP16),
    ("mmengine", "bf16-true"): ("none", None),
    ("mmengine", "fp16-true"): ("none", None),
    ("deepspeed", "fp64"): ("none", None),
    ("deepspeed", "fp32"): ("exact", DS_OFF),
    ("deepspeed", "tf32"): ("exact", DS_OFF),
    ("deepspeed", "bf16-mixed"): ("approximate", {"bf16": {"enabled": True}}),
    ("deepspeed", "fp16-mixed"): (
        "approximate",
        {"fp16": {"enabled": True, "loss_scale": 0, "initial_scale_power": 16}},
    ),
    ("deepspeed", "bf16-true"): ("approximate", DS_BF16_TRUE),
    ("deepspeed", "fp16-true"): ("none", None),
    # fp8 needs a backend library and an FP8 GPU in both Accelerate and Lightning (see BACKEND_ONLY).
    ("accelerate", "fp8-mixed"): ("approximate", "fp8"),
    ("lightning", "fp8-mixed"): ("approximate", "transformer-engine"),
    ("mmengine", "fp8-mixed"): ("none", None),
    ("deepspeed", "fp8-mixed"): ("none", None),
    ("accelerate", "int8-qat"): ("none", None),
    ("lightning", "int8-qat"): ("none", None),
    ("mmengine", "int8-qat"): ("none", None),
    ("deepspeed", "int8-qat"): ("none", None),
}
#: The rows whose mode exists now.
LIVE = sorted(key for key in TABLE if key[1] in CANONICAL)
#: Settings the libraries accept only with an optional backend installed (TransformerEngine, MS-AMP,
#: torchao) on an FP8 GPU: checked in the table above, not loaded by the libraries here.
BACKEND_ONLY = {("accelerate", "fp8-mixed"), ("lightning", "fp8-mixed")}


def framework_value(framework: str, config: dict[str, Any] | None) -> Any:
    """The one value in each framework's config payload that carries the precision."""
    if config is None:
        return None
    return {
        "accelerate": lambda c: c["mixed_precision"],
        "lightning": lambda c: c["trainer"]["precision"],
        "mmengine": lambda c: c["optim_wrapper"],
        "deepspeed": lambda c: c,
    }[framework](config)


def exports_with_config(framework: str) -> list[tuple[str, Any]]:
    """(mode, framework value) for every canonical mode the framework can express without extra backends."""
    rows = [(mode, TABLE[framework, mode][1]) for mode in CANONICAL if (framework, mode) not in BACKEND_ONLY]
    return [(mode, value) for mode, value in rows if value is not None]


@pytest.fixture
def restore_torch_flags() -> Iterator[None]:
    """Exported snippets set global TF32 flags; put them back."""
    saved = (torch.get_float32_matmul_precision(), torch.backends.cudnn.allow_tf32)
    yield
    torch.set_float32_matmul_precision(saved[0])
    torch.backends.cudnn.allow_tf32 = saved[1]


# -- the table --------------------------------------------------------------------------------------
def test_table_covers_every_mode_and_framework() -> None:
    assert {fw for fw, _ in TABLE} == set(FRAMEWORKS) == set(EXPORTERS)
    for framework in FRAMEWORKS:
        untested = set(CANONICAL) - {mode for fw, mode in TABLE if fw == framework}
        assert not untested, f"add the expected {framework} answer for {sorted(untested)} to TABLE"
    for name, cls in EXPORTERS.items():
        missing = set(CANONICAL) - set(cls.rows)
        assert not missing, f"add a row for {sorted(missing)} to integrations/exporters/{name}.py"


@pytest.mark.parametrize(("framework", "mode"), LIVE)
def test_mapping(framework: str, mode: str) -> None:
    equivalence, value = TABLE[framework, mode]
    assert EXPORTERS[framework].rows[mode].equivalence == equivalence
    result = export(framework, mode)
    assert (result.framework, result.precision, result.equivalence) == (framework, mode, equivalence)
    assert framework_value(framework, result.config) == value
    if equivalence == "none":
        assert result.code == ""
        assert result.notes[0] == f"{EXPORTERS[framework].title} has no equivalent of ampkit's {mode}."
    else:
        compile(result.code, f"<{framework} {mode}>", "exec")  # every printed snippet is valid Python


@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest.mark.parametrize("mode", ["fp32", "tf32"])
def test_tf32_lines_set_the_flags_the_mode_defines(
    framework: str, mode: str, restore_torch_flags: None
) -> None:
    result = export(framework, mode)
    flags = "\n".join(
        line for line in result.code.splitlines() if line.startswith(("import torch", "torch."))
    )
    exec(flags, {})
    want = MODES[mode].tf32
    assert torch.backends.cuda.matmul.allow_tf32 is want
    assert torch.backends.cudnn.allow_tf32 is want


def test_deepspeed_initial_scale_matches_ampkit() -> None:
    fp16 = export("deepspeed", "fp16-mixed").config["fp16"]  # type: ignore[index]
    assert fp16["loss_scale"] == 0  # 0 = dynamic loss scaling in DeepSpeed
    assert 2 ** fp16["initial_scale_power"] == INITIAL_LOSS_SCALE


def test_mmengine_snippet_builds_the_config_dict() -> None:
    for mode, value in exports_with_config("mmengine"):
        namespace: dict[str, Any] = {}
        exec(export("mmengine", mode).code, namespace)
        assert namespace["optim_wrapper"] == {**value, "optimizer": {"type": "SGD", "lr": 0.01}}


def test_exports_do_not_share_state_with_the_table() -> None:
    export("deepspeed", "fp16-mixed").config["fp16"]["enabled"] = False  # type: ignore[index]
    assert export("deepspeed", "fp16-mixed").config["fp16"]["enabled"] is True  # type: ignore[index]


# -- spellings and errors ---------------------------------------------------------------------------
def test_any_precision_spelling_and_framework_alias() -> None:
    assert export("Lightning", "16") == export("lightning", "fp16-mixed")
    assert export("pl", "bf16") == export("fabric", "bf16-mixed")
    assert export("accelerate", "no").precision == "fp32"
    assert export("DS", "16-true").framework == "deepspeed"


def test_unknown_framework_and_precision() -> None:
    with pytest.raises(
        UsageError, match=r"unknown framework 'keras'; valid: accelerate, lightning, mmengine"
    ):
        export("keras", "bf16")
    with pytest.raises(PrecisionError, match="unknown precision"):
        export("accelerate", "fp12")


def test_unmapped_mode_is_reported_not_guessed() -> None:
    result = EXPORTERS["lightning"]().export("fp4-someday")
    assert result.equivalence == "none" and result.config is None
    assert "ampkit has no Lightning mapping for fp4-someday yet." in result.notes


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


@pytest.mark.parametrize(("framework", "mode"), LIVE)
def test_json_and_yaml_records_round_trip(framework: str, mode: str) -> None:
    yaml = pytest.importorskip("yaml")
    result = export(framework, mode)
    assert json.loads(render(result, "json")) == result.to_dict()
    assert yaml.safe_load(render(result, "yaml")) == result.to_dict()


def test_text_output() -> None:
    text = render(export("deepspeed", "fp16-mixed"))
    assert text.startswith("ampkit precision fp16-mixed -> deepspeed: approximate\n")
    assert '"initial_scale_power": 16' in text and "deepspeed.initialize" in text and "notes:" in text
    none = render(export("accelerate", "bf16-true"))
    assert "Accelerate has no equivalent of ampkit's bf16-true." in none and "# Python" not in none


# -- CLI --------------------------------------------------------------------------------------------
def test_cli_text(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export", "--to", "lightning", "--precision", "bf16"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("ampkit precision bf16-mixed -> lightning: exact")
    assert 'Trainer(precision="bf16-mixed")' in out


def test_cli_says_plainly_when_there_is_none(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export", "--to", "mmengine", "--precision", "fp16-true"]) == 0
    assert "MMEngine has no equivalent of ampkit's fp16-true." in capsys.readouterr().out
    assert main(["export", "--to", "mmengine", "--precision", "fp16-true", "--config-only"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "it has: fp32, tf32, bf16-mixed, fp16-mixed" in err[0]


def test_cli_errors_are_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export", "--to", "keras", "--precision", "bf16"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "ampkit export: error: unknown framework 'keras'; valid: accelerate, lightning, mmengine, deepspeed"
    ]
    assert main(["export", "--to", "lightning", "--precision", "fp12"]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_cli_deepspeed_config_only_is_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export", "--to", "deepspeed", "--precision", "bf16", "--config-only"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out) == {"bf16": {"enabled": True}}
    assert "ampkit export: note: DeepSpeed's native bf16" in captured.err


# -- the real libraries -----------------------------------------------------------------------------
@pytest.fixture
def accelerate_state() -> Iterator[Any]:
    """accelerate; its process-wide AcceleratorState is reset after each use."""
    accelerate = pytest.importorskip("accelerate")
    from accelerate.state import AcceleratorState

    yield accelerate
    AcceleratorState._reset_state(reset_partial_state=True)


@pytest.mark.parametrize(("mode", "value"), exports_with_config("accelerate"))
def test_accelerate_loads_the_exported_config_file(
    mode: str, value: str, tmp_path: Any, capsys: pytest.CaptureFixture[str], accelerate_state: Any
) -> None:
    from accelerate.commands.config.config_args import ClusterConfig, load_config_from_file

    assert (
        main(["export", "--to", "accelerate", "--precision", mode, "--config-only", "--format", "yaml"]) == 0
    )
    path = tmp_path / "accelerate.yaml"
    path.write_text(capsys.readouterr().out)
    config = load_config_from_file(str(path))
    assert isinstance(config, ClusterConfig)
    assert config.mixed_precision == value
    assert config.num_processes == 1 and config.distributed_type.value == "NO"


@pytest.mark.parametrize(("mode", "value"), exports_with_config("accelerate"))
def test_accelerator_accepts_the_exported_setting(mode: str, value: str, accelerate_state: Any) -> None:
    accelerator = accelerate_state.Accelerator(mixed_precision=value, cpu=True)
    assert accelerator.mixed_precision == value
    # What the notes say about CPU: bf16 autocasts, fp16 is accepted but runs in fp32.
    assert accelerator.native_amp is (value == "bf16")


@pytest.mark.parametrize(("mode", "value"), exports_with_config("accelerate"))
def test_accelerate_snippet_runs(
    mode: str, value: str, accelerate_state: Any, restore_torch_flags: None
) -> None:
    namespace: dict[str, Any] = {}
    exec(export("accelerate", mode).code, namespace)
    assert namespace["accelerator"].mixed_precision == value


@pytest.mark.parametrize(("mode", "value"), exports_with_config("lightning"))
def test_lightning_fabric_accepts_the_exported_setting(mode: str, value: str) -> None:
    pytest.importorskip("lightning")
    from lightning.fabric import Fabric

    if value == "16-mixed":  # as the note says: Lightning swaps fp16 AMP for bf16 on CPU, with a warning
        with pytest.warns(UserWarning, match="not supported on CPU"):
            fabric = Fabric(accelerator="cpu", devices=1, precision=value)
        assert fabric._precision.precision == "bf16-mixed"
        return
    fabric = Fabric(accelerator="cpu", devices=1, precision=value)
    assert fabric._precision.precision == value
    param_dtype = fabric.setup_module(torch.nn.Linear(2, 2)).weight.dtype
    assert param_dtype == {
        "64-true": torch.float64,
        "bf16-true": torch.bfloat16,
        "16-true": torch.float16,
    }.get(value, torch.float32)


@pytest.mark.parametrize(("mode", "value"), exports_with_config("lightning"))
def test_lightning_snippet_runs(
    mode: str, value: str, tmp_path: Any, monkeypatch: pytest.MonkeyPatch, restore_torch_flags: None
) -> None:
    pytest.importorskip("lightning")
    monkeypatch.chdir(tmp_path)  # Trainer may create lightning_logs/ in the working directory
    namespace: dict[str, Any] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the 16-mixed-on-CPU swap is tested above
        exec(export("lightning", mode).code, namespace)
    want = "bf16-mixed" if value == "16-mixed" else value
    assert namespace["trainer"].precision == want
    assert namespace["fabric"]._precision.precision == want
