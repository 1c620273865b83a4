"""DeepSpeed: merging an export into the user's ds_config, validating it with DeepSpeed, training.

The merge rules run without DeepSpeed. The rest needs it (``.[test-integrations]``; it installs
on a CPU machine without building its ops): ``DeepSpeedConfig`` reads every merged config, and a
one-process engine on the CPU trains :class:`export_probe.Probe` with each export, the dtypes
compared with ampkit's.
"""

from __future__ import annotations

import copy
import errno
import importlib
import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from export_probe import ampkit_dtypes, step

from ampkit.cli import main
from ampkit.errors import UsageError
from ampkit.integrations import export, merge, merge_into

#: The acceptance config: ZeRO-3 with parameter and optimizer offload, the user's own fp16 scaler.
ZERO3: dict[str, Any] = {
    "train_micro_batch_size_per_gpu": 4,
    "gradient_accumulation_steps": 2,
    "zero_optimization": {
        "stage": 3,
        "offload_param": {"device": "cpu", "pin_memory": True},
        "offload_optimizer": {"device": "cpu", "pin_memory": True},
        "overlap_comm": True,
    },
    "fp16": {"enabled": False, "loss_scale_window": 500, "hysteresis": 4, "min_loss_scale": 2},
    "optimizer": {"type": "AdamW", "params": {"lr": 1e-4}},
}
MERGEABLE = ["fp32", "tf32", "bf16-mixed", "fp16-mixed", "bf16-true"]


def ds(mode: str) -> Any:
    return export("deepspeed", mode, "cuda")


# -- the merge rules --------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", MERGEABLE)
@pytest.mark.parametrize("enabled", [False, "auto", None])
def test_merge_keeps_stage_offload_and_scaler_settings(mode: str, enabled: Any) -> None:
    user = copy.deepcopy(ZERO3)
    if enabled is None:
        del user["fp16"]["enabled"]
    else:
        user["fp16"]["enabled"] = enabled
    before = copy.deepcopy(user)
    merged = merge_into(user, ds(mode))
    assert user == before  # the input is not modified
    assert merged["zero_optimization"] == ZERO3["zero_optimization"]  # stage 3 and offload, as they were
    assert merged["optimizer"] == ZERO3["optimizer"]
    for key in ("loss_scale_window", "hysteresis", "min_loss_scale"):
        assert merged["fp16"][key] == ZERO3["fp16"][key]
    assert merged["fp16"]["enabled"] is False  # the export's precision, not the user's native fp16
    config = ds(mode).config
    assert config is not None
    for block, keys in config.items():
        if block != "zero_optimization":
            assert {k: merged[block][k] for k in keys} == keys


def test_merge_notes_what_it_changed() -> None:
    user = {"fp16": {"enabled": "auto", "loss_scale_window": 500}}
    result = merge(user, ds("fp16-mixed"))
    assert result.config["torch_autocast"] == {"enabled": True, "dtype": "float16"}
    assert any('fp16.enabled was "auto": set to false' in note for note in result.notes)
    assert any("fp16.loss_scale_window kept, but unused" in note and "2000" in note for note in result.notes)
    result = merge({"train_micro_batch_size_per_gpu": 1}, ds("bf16-true"))
    assert result.config["zero_optimization"] == {"stage": 1}
    assert any(note.startswith("zero_optimization.stage set to 1") for note in result.notes)


#: (id, the user's config, mode, the one line) for contradictions the merge refuses.
CONFLICTS = [
    (
        "fp16-vs-bf16",
        {"fp16": {"enabled": True}},
        "bf16-mixed",
        "ds_config has fp16.enabled=true; the export asks bf16-mixed: remove one",
    ),
    (
        "fp16-vs-fp16-mixed",
        {"fp16": {"enabled": True, "loss_scale_window": 1000}},
        "fp16-mixed",
        "fp16.enabled=true; the export asks fp16-mixed",
    ),
    (
        "bf16-vs-fp32",
        {"bf16": {"enabled": True}},
        "fp32",
        "ds_config has bf16.enabled=true; the export asks fp32",
    ),
    (
        "autocast-dtype",
        {"torch_autocast": {"enabled": True, "dtype": "bf16"}},
        "fp16-mixed",
        'torch_autocast.dtype="bf16"',
    ),
    ("autocast-vs-true", {"torch_autocast": {"enabled": True}}, "bf16-true", "torch_autocast.enabled=true"),
    (
        "bf16-mixed-vs-true",
        {"bf16": {"enabled": True, "bf16_master_weights_and_grads": False}},
        "bf16-true",
        "bf16.bf16_master_weights_and_grads=false",
    ),
    (
        "stage-0",
        {"zero_optimization": {"stage": 0}},
        "bf16-true",
        "zero_optimization.stage=0; the export asks bf16-true, which needs ZeRO stage 1-3",
    ),
    ("block-not-object", {"fp16": True}, "fp32", "ds_config has fp16=true"),
    (
        "apex-amp",
        {"amp": {"enabled": True, "opt_level": "O1"}},
        "bf16-mixed",
        "ds_config has amp.enabled=true",
    ),
]


@pytest.mark.parametrize(
    ("user", "mode", "needle"), [pytest.param(u, m, n, id=i) for i, u, m, n in CONFLICTS]
)
def test_merge_refuses_a_contradiction_in_one_line(user: dict[str, Any], mode: str, needle: str) -> None:
    with pytest.raises(UsageError) as caught:
        merge_into(user, ds(mode))
    message = str(caught.value)
    assert needle in message and message.endswith(": remove one") and "\n" not in message


def test_merge_agrees_with_the_users_own_spelling() -> None:
    user = {
        "torch_autocast": {
            "enabled": True,
            "dtype": "bf16",
            "lower_precision_safe_modules": ["torch.nn.Linear"],
        }
    }
    merged = merge_into(user, ds("bf16-mixed"))
    assert merged["torch_autocast"] == user["torch_autocast"]  # "bf16" is DeepSpeed's "bfloat16"
    off = {"torch_autocast": {"enabled": False, "dtype": "bfloat16"}}
    assert merge_into(off, ds("fp16-mixed"))["torch_autocast"] == {"enabled": True, "dtype": "float16"}


def test_merge_of_no_equivalent_names_what_merges() -> None:
    with pytest.raises(
        UsageError, match=r"no equivalent of ampkit's fp16-true: nothing to merge; valid: fp32, tf32"
    ):
        merge({}, ds("fp16-true"))
    with pytest.raises(UsageError, match=r"is a JSON list; valid: a JSON object"):
        merge([], ds("fp32"))


# -- the CLI ----------------------------------------------------------------------------------------
MERGE = ["export", "--to", "deepspeed", "--precision", "bf16", "--merge-into"]


def test_cli_merge_into_in_place(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "ds_config.json"
    path.write_text(json.dumps(ZERO3))
    argv = [*MERGE, str(path), "--out", str(path), "--device", "cuda"]
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert captured.out == "" and f"wrote {path}" in captured.err and "NVIDIA_TF32_OVERRIDE=0" in captured.err
    assert json.loads(path.read_text()) == merge_into(ZERO3, ds("bf16-mixed"))
    assert [p.name for p in tmp_path.iterdir()] == ["ds_config.json"]
    assert main([*MERGE, str(path)]) == 0  # merging again changes nothing
    assert json.loads(capsys.readouterr().out) == json.loads(path.read_text())


def test_cli_merge_disk_full_keeps_the_old_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import ampkit.fsutil

    path = tmp_path / "ds_config.json"
    path.write_text(json.dumps(ZERO3))

    def full(*args: Any, **kwargs: Any) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ampkit.fsutil, "write_atomic", full)
    assert main([*MERGE, str(path), "--out", str(path)]) == 1
    err = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert len(err) == 1 and "No space left" in err[0]
    assert json.loads(path.read_text()) == ZERO3


# -- DeepSpeed itself -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def deepspeed() -> Iterator[Any]:
    """deepspeed, with a one-process gloo group on this machine for the engine tests."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DS_ACCELERATOR", "cpu")  # the CPU engine even where a GPU is present
        module = pytest.importorskip("deepspeed")
        import torch.distributed as dist

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        for key, value in {
            "RANK": "0",
            "WORLD_SIZE": "1",
            "LOCAL_RANK": "0",
            "LOCAL_WORLD_SIZE": "1",
        }.items():
            patch.setenv(key, value)
        patch.setenv("MASTER_ADDR", "127.0.0.1")
        patch.setenv("MASTER_PORT", str(port))
        # The CPU accelerator JIT-compiles a shared-memory allreduce (about a minute) that one process never uses.
        patch.setattr(importlib.import_module("deepspeed.comm.torch"), "build_shm_op", lambda: None)
        yield module
        if dist.is_initialized():
            dist.destroy_process_group()
        setattr(importlib.import_module("deepspeed.comm.comm"), "cdb", None)  # noqa: B010


@pytest.mark.parametrize("mode", MERGEABLE)
def test_deepspeed_reads_the_merged_zero3_config(mode: str, deepspeed: Any) -> None:
    from deepspeed.runtime.config import DeepSpeedConfig

    config = DeepSpeedConfig(merge_into(ZERO3, ds(mode)))
    assert config.zero_optimization_stage == 3
    assert config.zero_config.offload_param.device == config.zero_config.offload_optimizer.device == "cpu"
    assert config.float16_config.enabled is False
    assert (config.float16_config.loss_scale_window, config.float16_config.hysteresis) == (500, 4)
    autocast = {"bf16-mixed": torch.bfloat16, "fp16-mixed": torch.float16}.get(mode)
    assert config.torch_autocast_enabled is (autocast is not None)
    assert config.torch_autocast_dtype == autocast
    assert config.bfloat16_config.enabled is (mode == "bf16-true")


@pytest.mark.parametrize("mode", MERGEABLE)
def test_deepspeed_engine_trains_as_labelled(mode: str, deepspeed: Any) -> None:
    from export_probe import Probe

    config = merge_into(
        {"train_micro_batch_size_per_gpu": 2, "fp16": {"loss_scale_window": 500}}, export("ds", mode, "cpu")
    )
    model = Probe()
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.01)
    engine, _, _, _ = deepspeed.initialize(model=model, optimizer=optimizer, config=config)
    cast = torch.bfloat16 if mode == "bf16-true" else None  # the native bf16 engine leaves inputs to you
    seen = step(model, lambda x: engine(x.to(cast) if cast else x), engine.backward)
    engine.step()
    label = export("ds", mode, "cpu").equivalence
    assert (seen == ampkit_dtypes(mode)) is (label == "exact"), f"{mode}: {seen} vs {ampkit_dtypes(mode)}"
    if mode == "fp16-mixed":  # torch_autocast's scaler: PyTorch's GradScaler, as ampkit's
        scaler = engine.torch_autocast_z0_gradscaler
        assert isinstance(scaler, torch.amp.GradScaler) and scaler.get_growth_interval() == 2000
        assert scaler.get_scale() in (2.0**16, 2.0**15)  # 2**16 at the start, halved if step 1 overflowed
