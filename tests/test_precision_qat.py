"""int8-qat: torch.ao fake-quant training reaches fp32 accuracy on digits; evaluate runs real int8 kernels."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from torch import nn

from ampkit.cli import main
from ampkit.engine import RunResult, TrainConfig, train
from ampkit.precision import MODES, Precision, PrecisionError, canonical_mode
from ampkit.precision.qat import convert_int8, is_int8, is_qat
from ampkit.tasks import TaskSpec, build_task

STEPS = 150  # digits/small at the default lr: fp32 reaches ~99% held-out accuracy


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, tuple[Path, RunResult]]]:
    """digits/small trained under fp32 and int8-qat (one thread: the shared test machine is busy)."""
    threads = torch.get_num_threads()
    out: dict[str, tuple[Path, RunResult]] = {}
    try:
        for mode in ("fp32", "int8-qat"):
            folder = tmp_path_factory.mktemp(mode)
            config = TrainConfig(
                task="digits",
                precision=mode,
                device="cpu",
                steps=STEPS,
                size="small",
                threads=1,
                out=folder,
                progress=False,
                flop_share=False,
            )
            out[mode] = folder, train(config)
        yield out
    finally:
        torch.set_num_threads(threads)


def test_int8_qat_trains_digits_within_two_points_of_fp32(runs: dict[str, tuple[Path, RunResult]]) -> None:
    fp32 = runs["fp32"][1].final["accuracy"]
    qat = runs["int8-qat"][1].final["accuracy"]
    print(f"\ndigits/small {STEPS} steps: fp32 accuracy {fp32:.4f}, int8-qat (fake-quant) {qat:.4f}")
    assert fp32 > 0.95
    assert qat >= fp32 - 0.02
    assert "quant=int8/fake-quant(x86)" in runs["int8-qat"][1].describe


def test_evaluate_runs_the_converted_int8_model(
    runs: dict[str, tuple[Path, RunResult]], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["evaluate", str(runs["int8-qat"][0]), "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    line, payload = out.split("\n", 1)
    metrics = json.loads(payload)
    fp32 = runs["fp32"][1].final["accuracy"]
    print(f"\nampkit evaluate (int8 kernels): accuracy {metrics['accuracy']:.4f} vs fp32 {fp32:.4f}")
    assert "quant=int8/kernels(x86)" in line
    assert metrics["trained_as"] == metrics["precision"] == "int8-qat"
    assert metrics["accuracy"] >= fp32 - 0.02


def test_evaluating_a_qat_checkpoint_as_another_mode_is_a_usage_error(
    runs: dict[str, tuple[Path, RunResult]], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["evaluate", str(runs["int8-qat"][0]), "--device", "cpu", "--precision", "fp32"]) == 2
    assert "evaluate it as int8-qat" in capsys.readouterr().err


def _digits_model() -> nn.Module:
    return build_task("digits", TaskSpec(0, 8, torch.device("cpu"), "small")).model


def test_prepare_fuses_batchnorm_shares_parameters_and_converts_to_int8() -> None:
    model = _digits_model()
    before = {id(p) for p in model.parameters()}
    prepared = Precision("int8-qat").prepare(model)
    # The optimizer, built after prepare, must see the very tensors the traced copy trains.
    assert is_qat(prepared) and {id(p) for p in prepared.parameters()} == before
    kinds = {type(m).__name__ for m in prepared.modules()}
    assert "ConvBnReLU2d" in kinds and "BatchNorm2d" not in {type(m).__name__ for m in prepared.children()}
    x = torch.rand(16, 1, 8, 8)
    prepared.eval()
    fake = prepared(x)
    int8 = convert_int8(prepared)
    assert is_int8(int8) and is_qat(prepared)  # converted copy; the trained model is untouched
    assert any(p.dtype == torch.qint8 for m in int8.modules() for p in _packed_weights(m))
    assert torch.allclose(int8(x), fake, atol=0.1)


def _packed_weights(module: nn.Module) -> list[torch.Tensor]:
    weight = getattr(module, "weight", None)
    return (
        [weight()] if callable(weight) and type(module).__module__.startswith("torch.ao.nn.quantized") else []
    )


def test_keep_fp32_modules_are_not_quantised() -> None:
    prepared = Precision("int8-qat", keep_fp32="re:^head$").prepare(_digits_model())
    assert type(prepared.get_submodule("head")) is nn.Linear
    assert type(prepared.get_submodule("features.0")).__name__ == "ConvBnReLU2d"
    int8 = convert_int8(prepared.eval())
    assert type(int8.get_submodule("head")) is nn.Linear


def test_embeddings_stay_float_and_tinygpt_converts() -> None:
    task = build_task("tinygpt", TaskSpec(0, 4, torch.device("cpu"), "small"))
    prepared = Precision("int8-qat").prepare(task.model)
    assert type(prepared.get_submodule("tok")) is nn.Embedding
    inputs, _ = task.train_batch(0)
    prepared(inputs).float().mean().backward()
    logits = convert_int8(prepared.eval())(inputs)
    assert logits.shape[:2] == inputs.shape and torch.isfinite(logits).all()


class _Branchy(nn.Module):
    """Data-dependent control flow: torch.fx cannot trace it."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = _Gate()
        self.out = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.gate(x))


class _Gate(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x if x.sum() > 0 else -x


def test_untraceable_model_is_a_precision_error_and_keep_fp32_works_around_it() -> None:
    with pytest.raises(PrecisionError, match=r"int8-qat: torch.fx cannot trace _Branchy.*--keep-fp32"):
        Precision("int8-qat").prepare(_Branchy())
    prepared = Precision("int8-qat", keep_fp32="re:^gate$").prepare(_Branchy())
    assert torch.isfinite(prepared(torch.randn(3, 4))).all()


def test_conversion_needs_the_cpu_and_a_qat_model() -> None:
    prepared = Precision("int8-qat").prepare(nn.Sequential(nn.Linear(4, 4)))
    with pytest.raises(PrecisionError, match=r"CPU only.*--device cpu"):
        convert_int8(prepared.to("meta"))
    with pytest.raises(PrecisionError, match="needs a model prepared for int8-qat"):
        convert_int8(nn.Linear(4, 4))
    assert Precision("fp32").convert(model := nn.Linear(2, 2)) is model


def test_spellings_and_spec() -> None:
    assert canonical_mode("int8") == canonical_mode("qat") == canonical_mode("INT8_QAT") == "int8-qat"
    spec = MODES["int8-qat"]
    assert (spec.quantization, spec.param_dtype, spec.autocast_dtype, spec.grad_scaler) == (
        "int8",
        torch.float32,
        None,
        False,
    )


class _Finetune(nn.Module):
    """A pretrained backbone, frozen and put in eval() before prepare (QA s08), and a new head."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.backbone = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU())
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(4 * 4 * 4, 3))
        with torch.no_grad():
            self.backbone[1].running_mean.fill_(0.3)
            self.backbone[1].running_var.fill_(2.0)
        self.backbone.requires_grad_(False)
        self.backbone.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))


def test_a_frozen_eval_backbone_stays_in_eval_and_keeps_its_running_stats() -> None:
    model = _Finetune()
    flags = {name: m.training for name, m in model.named_modules()}
    prepared = Precision("int8-qat").prepare(model)
    assert {name: m.training for name, m in model.named_modules()} == flags  # the caller's model as it was
    backbone = {n: m.training for n, m in prepared.named_modules() if n.startswith("backbone")}
    assert backbone and not any(backbone.values()), backbone  # fused ConvBnReLU2d, its bn, fake-quants
    assert prepared.training and prepared.get_submodule("head.1").training
    running_mean = next(b for n, b in prepared.named_buffers() if n.endswith("running_mean"))
    opt = torch.optim.Adam([p for p in prepared.parameters() if p.requires_grad], lr=1e-2)
    x, y = torch.randn(8, 3, 4, 4) * 3 + 1, torch.randint(0, 3, (8,))
    for _ in range(3):
        nn.functional.cross_entropy(prepared(x), y).backward()
        opt.step()
        opt.zero_grad()
    assert torch.equal(running_mean, torch.full((4,), 0.3))  # was overwritten by batch statistics


def test_an_untraceable_model_gets_its_training_flags_back_too() -> None:
    model = _Branchy()
    model.gate.eval()
    with pytest.raises(PrecisionError, match="cannot trace"):
        Precision("int8-qat").prepare(model)
    assert model.training and not model.gate.training and model.out.training
