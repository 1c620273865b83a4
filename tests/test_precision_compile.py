"""torch.compile under every precision mode (``prec.compile``, ``--compile``), on tiny CPU shapes.

Most rows trace with ``backend="aot_eager"`` (dynamo + AOTAutograd: the graph breaks and the
backward graph, without C++ builds); one test builds real inductor kernels on the tiniest model.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
import torch._dynamo
import torch.nn.functional as F
from cli_cases import Case, params, run_case
from torch import nn

import ampkit.precision.compile as compile_mod
from ampkit.cli import main
from ampkit.engine import TrainConfig, train
from ampkit.optim import PrecisionOptimizer
from ampkit.optim_bf16 import bf16_adamw
from ampkit.precision import Precision, fp32
from ampkit.precision.compile import CompileWarning, compile_state
from ampkit.tasks import TaskSpec, build_task
from ampkit.tasks.tinygpt import SIZES, TinyGPT
from ampkit.verify.checks import tiny_data, tiny_model

SRC = str(Path(compile_mod.__file__).resolve().parents[1])  # .../src/ampkit


@pytest.fixture(autouse=True)
def _fresh_dynamo() -> Iterator[None]:
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


@pytest.fixture
def traced(monkeypatch: pytest.MonkeyPatch) -> None:
    """``--compile`` in the engine and the CLI traces with aot_eager instead of building C++ kernels."""
    monkeypatch.setattr(compile_mod, "DEFAULT_BACKEND", "aot_eager")


def _step_fn(prec: Precision, model: nn.Module) -> Any:
    @fp32
    def loss_fn(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(out.reshape(-1, out.shape[-1]), target.reshape(-1))

    def step(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with prec.autocast():
            out = model(prec.cast_inputs(x))
        return loss_fn(out, y)  # the @fp32 loss inside the compiled region

    return step


def _ampkit_breaks(explained: Any) -> list[str]:
    """Graph breaks whose innermost user frame is ampkit's own code."""
    return [
        b.reason.splitlines()[0]
        for b in explained.break_reasons
        if b.user_stack and str(Path(b.user_stack[-1].filename).resolve()).startswith(SRC)
    ]


@pytest.mark.parametrize(
    ("task", "mode", "keep"),
    [
        ("digits", "fp32", None),
        ("digits", "bf16-mixed", "BatchNorm2d"),
        ("tinygpt", "fp32", None),
        ("tinygpt", "bf16-mixed", "LayerNorm,re:^head$"),
        ("tinygpt", "bf16-true", None),
        ("tinygpt", "fp8-mixed", "re:^head$"),
    ],
)
def test_no_graph_breaks_in_ampkit_code(task: str, mode: str, keep: str | None) -> None:
    """autocast, keep_fp32 islands, true-half norms, fp8 layers and an @fp32 loss: one graph."""
    built = build_task(task, TaskSpec(0, 2, torch.device("cpu"), "small"))
    prec = Precision(mode, "cpu", keep_fp32=keep, fp8_emulate=True)
    model = prec.prepare(built.model)
    x, y = built.train_batch(0)
    with prec.scope():
        explained = torch._dynamo.explain(_step_fn(prec, model))(x, y)
    assert explained.graph_break_count == 0, [b.reason.splitlines()[0] for b in explained.break_reasons]
    assert explained.graph_count == 1


def test_int8_qat_breaks_only_in_torch_ao() -> None:
    """int8-qat compiles with breaks at torch.ao's fake-quantise modules (dynamo skips them), none in ampkit."""
    built = build_task("digits", TaskSpec(0, 2, torch.device("cpu"), "small"))
    prec = Precision("int8-qat", "cpu")
    model = prec.prepare(built.model)
    x, y = built.train_batch(0)
    with prec.scope():
        explained = torch._dynamo.explain(_step_fn(prec, model))(x, y)
    assert explained.graph_break_count > 0  # torch.ao's, by design of dynamo
    assert _ampkit_breaks(explained) == []


def _api_steps(mode: str, compiled: bool, keep: str | None, update: str) -> tuple[list[Any], Any]:
    """Three steps of the public API (prepare, autocast, @fp32 loss, PrecisionOptimizer) on the tiny model."""
    prec = Precision(mode, "cpu", keep_fp32=keep, fp8_emulate=True)
    model = prec.prepare(tiny_model())
    if compiled:
        prec.compile(model, backend="aot_eager")
    params = list(model.parameters())
    inner = bf16_adamw(params, update, lr=1e-2) if update != "plain" else torch.optim.AdamW(params, lr=1e-2)
    opt = PrecisionOptimizer(inner, prec, model=model)
    mse = fp32(F.mse_loss)
    x, y = tiny_data(prec.device)
    steps = []
    with prec.scope():
        for _ in range(3):
            with prec.autocast():
                out = model(prec.cast_inputs(x))
            loss = mse(out, y)
            opt.backward(loss)
            steps.append((loss.item(), opt.step().applied))
    return steps, compile_state(model)


#: (mode, keep_fp32, bf16 update): every mode of the issue, fp32 islands, the Kahan/stochastic updates.
MODE_ROWS = [
    ("fp32", None, "plain"),
    ("tf32", None, "plain"),
    ("bf16-mixed", "LayerNorm", "plain"),
    ("fp16-mixed", "LayerNorm", "plain"),
    ("bf16-true", None, "kahan"),
    ("bf16-true", "re:^3$", "stochastic"),
    ("fp8-mixed", "LayerNorm", "plain"),
    ("int8-qat", None, "plain"),
]


@pytest.mark.parametrize(("mode", "keep", "update"), MODE_ROWS)
def test_every_mode_trains_compiled_like_eager(mode: str, keep: str | None, update: str) -> None:
    """The compiled steps' losses follow the eager ones; the scaler, the bf16 updates and the
    non-finite check run outside the graph, as eager."""
    torch.manual_seed(0)  # stochastic rounding draws random bits: the same ones in both runs
    eager, _ = _api_steps(mode, False, keep, update)
    with warnings.catch_warnings():
        warnings.simplefilter("error", CompileWarning)  # no fallback allowed here
        torch.manual_seed(0)
        compiled, state = _api_steps(mode, True, keep, update)
    assert state is not None and state.status == "compiled" and state.graphs >= 1, state
    tol = 1e-5 if mode in ("fp32", "tf32") else 2e-2  # decomposed 16-bit ops may round differently
    for (loss_e, applied_e), (loss_c, applied_c) in zip(eager, compiled, strict=True):
        assert loss_c == pytest.approx(loss_e, rel=tol), (mode, eager, compiled)
        assert applied_c == applied_e  # fp16-mixed: the scaler decides the same


def test_engine_records_compile_time_apart_from_step_time() -> None:
    """``train(compile=True)``: same losses as eager; step 1 compiled, its compile seconds recorded."""

    def run(compiled: bool) -> Any:
        config = TrainConfig(task="tinygpt", size="small", precision="bf16-mixed", keep_fp32="LayerNorm",
                             steps=3, batch_size=4, device="cpu", progress=False, compile=compiled,
                             compile_backend="aot_eager")  # fmt: skip
        return train(config)

    eager, compiled = run(False), run(True)
    info = compiled.compile
    assert eager.compile is None
    assert info["status"] == "compiled" and info["backend"] == "aot_eager" and info["graphs"] >= 1, info
    assert info["compile_steps"][:1] == [1] and info["compile_s"] > 0
    assert info["compile_step_wall_s"] >= info["compile_s"]  # the compile happened inside step 1
    assert info["first_step_s"] == compiled.history[0].time_s
    assert info["total_compile_s"] >= info["compile_s"]  # + the evaluation's own graph
    for a, b in zip(eager.history, compiled.history, strict=True):
        assert b.loss == pytest.approx(a.loss, rel=2e-2)


def test_inductor_builds_real_kernels_for_a_mixed_mode_with_islands() -> None:
    """The one inductor row: C++ kernels for bf16-mixed with a LayerNorm fp32 island, forward and
    backward; the step matches eager."""
    prec = Precision("bf16-mixed", "cpu", keep_fp32="LayerNorm")
    x, y = tiny_data(prec.device)
    results = []
    for compiled in (False, True):
        model = prec.prepare(tiny_model())
        if compiled:
            with warnings.catch_warnings():
                warnings.simplefilter("error", CompileWarning)
                prec.compile(model)  # inductor: torch.compile's default
                with prec.autocast():
                    out = model(x)
        else:
            with prec.autocast():
                out = model(x)
        loss = F.mse_loss(out.float(), y)
        loss.backward()
        results.append((out.dtype, loss.item(), model[0].weight.grad.clone()))
    assert compile_state(model) is not None and compile_state(model).status == "compiled"  # type: ignore[union-attr]
    (dtype_e, loss_e, grad_e), (dtype_c, loss_c, grad_c) = results
    assert dtype_e == dtype_c == torch.bfloat16  # the last Linear runs under bf16 autocast
    assert loss_c == pytest.approx(loss_e, rel=2e-2)
    assert torch.allclose(grad_c, grad_e, rtol=5e-2, atol=1e-3)


def _failing_backend(gm: Any, example_inputs: Any) -> Any:
    raise RuntimeError("simulated inductor failure\nsecond line")


def test_a_failed_compile_warns_once_and_runs_eager() -> None:
    prec = Precision("fp32", "cpu")
    model = prec.prepare(tiny_model())
    x, _ = tiny_data(prec.device)
    expected = tiny_model()(x)
    prec.compile(model, backend=_failing_backend)
    with pytest.warns(CompileWarning) as caught:
        first = model(x)
    second = model(x)  # plain eager from now on: no second warning
    assert len([w for w in caught if w.category is CompileWarning]) == 1
    message = str(caught[0].message)
    assert "simulated inductor failure" in message and "running it eager" in message and "\n" not in message
    assert torch.equal(first, expected) and torch.equal(second, expected)
    state = compile_state(model)
    assert state is not None and state.status == "eager" and "simulated" in (state.reason or "")
    assert model._compiled_call_impl is None


def test_a_backward_compile_failure_surfaces_at_the_first_call_not_in_backward() -> None:
    from torch._dynamo.backends.common import aot_autograd

    def broken_backward(gm: Any, example_inputs: Any) -> Any:
        raise RuntimeError("backward kernel does not build")

    backend = aot_autograd(fw_compiler=lambda gm, ex: gm, bw_compiler=broken_backward)
    prec = Precision("bf16-mixed", "cpu")
    model = prec.prepare(tiny_model())
    x, y = tiny_data(prec.device)
    prec.compile(model, backend=backend)
    with pytest.warns(CompileWarning, match="backward kernel does not build"), prec.autocast():
        out = model(x)
    F.mse_loss(out.float(), y).backward()  # eager graph: no late failure here
    assert model[0].weight.grad is not None


def test_compiling_a_function_with_an_fp32_loss() -> None:
    prec = Precision("bf16-mixed", "cpu", keep_fp32="LayerNorm")
    built = build_task("tinygpt", TaskSpec(0, 2, torch.device("cpu"), "small"))
    model = prec.prepare(built.model)
    x, y = built.train_batch(0)
    step = _step_fn(prec, model)
    expected = step(x, y)
    fast = prec.compile(step, backend="aot_eager")
    got = fast(x, y)
    assert got.dtype == torch.float32 and got.item() == pytest.approx(expected.item(), rel=2e-2)
    state = compile_state(fast)
    assert state is not None and state.status == "compiled"


def test_state_dict_keys_unchanged_and_unknown_backend_refused() -> None:
    prec = Precision("fp32", "cpu")
    model = prec.prepare(tiny_model())
    keys = list(model.state_dict())
    prec.compile(model, backend="aot_eager")
    assert list(model.state_dict()) == keys  # checkpoints load into eager and compiled runs alike
    with pytest.raises(ValueError, match=r"unknown; valid:.*inductor"):
        prec.compile(tiny_model(), backend="no-such-backend")


def test_prepare_with_compile_argument_compiles() -> None:
    prec = Precision("bf16-true", "cpu", compile={"backend": "aot_eager"})
    model = prec.prepare(tiny_model())
    assert model(prec.cast_inputs(tiny_data(prec.device)[0])).dtype == torch.bfloat16
    assert compile_state(model).status == "compiled"  # type: ignore[union-attr]


def test_a_mode_that_cannot_compile_says_so_in_one_line_and_trains_eager(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(compile_mod, "cannot_compile", lambda mode, device, backend: "no compiler in test")
    out = tmp_path / "run"
    argv = [
        "train",
        "--task",
        "digits",
        "--size",
        "small",
        "--steps",
        "2",
        "--batch-size",
        "8",
        "--device",
        "cpu",
        "--compile",
        "--out",
        str(out),
    ]
    capsys.readouterr()
    assert main(argv) == 0
    err = capsys.readouterr().err
    warned = [line for line in err.splitlines() if "warning:" in line]
    assert warned == ["ampkit: warning: torch.compile: fp32 on cpu runs eager: no compiler in test"]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["compile"]["status"] == "eager" and "no compiler in test" in metrics["compile"]["reason"]


def test_cli_train_evaluate_analyze_verify_with_compile(
    traced: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    common = ["--task", "digits", "--size", "small", "--batch-size", "8", "--device", "cpu", "--compile"]
    assert main(["train", *common, "--steps", "2", "--precision", "bf16-mixed", "--out", str(out)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["compile"]["status"] == "compiled" and summary["compile"]["compile_steps"] == [1]
    assert summary["compile"]["compile_s"] > 0
    assert main(["evaluate", str(out), "--device", "cpu", "--compile"]) == 0
    evaluated = json.loads(capsys.readouterr().out.split("\n", 1)[1])  # after the describe line
    assert evaluated["compile"]["status"] == "compiled" and evaluated["precision"] == "bf16-mixed"
    assert main(["analyze", *common, "--steps", "2", "--precision", "bf16-mixed", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert len(report["drift"]) == 2 and report["mode"] == "bf16-mixed"
    assert (
        main(["verify", "--device", "cpu", "--modes", "fp32,bf16-mixed,bf16-true", "--compile", "--json"])
        == 0
    )
    reports = json.loads(capsys.readouterr().out)
    assert [r["status"] for r in reports] == ["pass", "pass", "pass"]


def test_compare_compile_both_sets_eager_and_compiled_arms_side_by_side(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "study.toml").write_text(
        '[experiments.c]\ntask = "digits"\nprecisions = ["fp32"]\nsteps = 6\nwarmup_steps = 2\n'
        'overrides = { size = "small", batch_size = 8, device = "cpu", compile_backend = "aot_eager" }\n'
    )
    out = tmp_path / "study"
    assert (
        main(["compare", "--config", str(tmp_path / "study.toml"), "--compile", "both", "--out", str(out)])
        == 0
    )
    table = capsys.readouterr().out
    study = json.loads((out / "c" / "results.json").read_text())
    arms = {a["mode"]: a for a in study["arms"]}
    assert list(arms) == ["fp32", "fp32+compile"] and study["settings"]["compile"] == "both"
    eager, compiled = arms["fp32"], arms["fp32+compile"]
    assert "compile_time_s" not in eager["summary"]
    run = compiled["runs"][0]
    assert run["compile"]["status"] == "compiled" and run["compile"]["compile_steps"] == [1]
    assert run["figures"]["compile_time_s"]["value"] > 0 and run["figures"]["first_step_s"]["value"] > 0
    assert compiled["summary"]["compile_time_s"]["value"] > 0
    assert compiled["summary"]["compile_speedup"]["value"] > 0
    assert "steps 3-6" in compiled["summary"]["step_time_median_s"]["method"]  # warm-up (compile) excluded
    assert "fp32+compile" in table and "compile s" in table
    assert "fp32+compile" in (out / "c" / "report.md").read_text()


def test_gpu_sizes() -> None:
    assert SIZES["gpu"] == (64, 768, 12, 12, 1024)
    with torch.device("meta"):
        gpt = TinyGPT(*SIZES["gpu"])
    assert sum(p.numel() for p in gpt.parameters()) == 85_940_800  # GPT-2 small's body, 64-token vocabulary
    digits = build_task("digits", TaskSpec(0, 2, torch.device("cpu"), "gpu"))
    x, _ = digits.train_batch(0)
    assert digits.model(x).shape == (2, 10) and x.shape == (2, 1, 8, 8)


def _ct_study(tmp: Path) -> None:
    (tmp / "s.toml").write_text('[experiments.a]\ntask = "digits"\ncompile = 3\n')


def _backend_study(tmp: Path) -> None:
    (tmp / "s.toml").write_text(
        '[experiments.a]\ntask = "digits"\noverrides = { compile_backend = "nope" }\n'
    )


def _override_study(tmp: Path) -> None:
    (tmp / "s.toml").write_text('[experiments.a]\ntask = "digits"\noverrides = { compile = true }\n')


BAD = [
    Case("compare-compile-value", ["compare", "--compile", "maybe"], needle="--compile"),
    Case(
        "compare-compile-type-in-file",
        ["compare", "--config", "{tmp}/s.toml"],
        needle="compile = 3",
        setup=_ct_study,
    ),
    Case(
        "compare-unknown-backend",
        ["compare", "--config", "{tmp}/s.toml"],
        needle="unknown torch.compile backend",
        setup=_backend_study,
    ),
    Case(
        "compare-compile-as-override",
        ["compare", "--config", "{tmp}/s.toml"],
        needle="compile",
        setup=_override_study,
    ),
    Case(
        "compare-compile-with-command",
        ["compare", "--compile", "on", "--", "python", "x.py"],
        needle="--compile",
    ),
    Case("train-size-unknown", ["train", "--size", "huge"], needle="--size"),
    Case(
        "train-ct-has-no-gpu-size",
        ["train", "--task", "ct", "--size", "gpu", "--device", "cpu"],
        needle="no gpu size",
    ),
    Case(
        "compare-ct-has-no-gpu-size",
        ["compare", "--task", "ct", "--size", "gpu", "--device", "cpu"],
        needle="no gpu size",
    ),
]


@pytest.mark.parametrize("case", params(BAD))
def test_bad_compile_and_size_values(
    case: Case, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    run_case(case, tmp_path, capsys, monkeypatch)
