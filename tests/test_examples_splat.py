"""examples/splat_train.py: a Gaussian-splatting trainer ported to ampkit, and docs/adopt.md's diff of the port.

Everything runs in-process on tiny shapes (16x16 image, 24 gaussians, 20 iterations, one
densification at iteration 10), so the 16-bit modes stay cheap on CPUs without avx512_bf16.
"""

from __future__ import annotations

import importlib.util
import json
import math
import re
import runpy
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import torch

from ampkit import PrecisionOptimizer

ROOT = Path(__file__).parent.parent
PORT, PLAIN = ROOT / "examples" / "splat_train.py", ROOT / "examples" / "splat_train_plain.py"
ADOPT = ROOT / "docs" / "adopt.md"

ITERATIONS = 20
# Seed 1: the first densification clones 12 points and prunes 6, and every gradient statistic and
# opacity is >= 6% (in log/logit) from its threshold, while bf16/fp16 move them by < 1%.
TINY = ["--iterations", str(ITERATIONS), "--size", "16", "--points", "24", "--seed", "1", "--device", "cpu"]
TINY += ["--densify_from", "10", "--densify_every", "10", "--log_every", "10"]
MIXED = {"bf16-mixed": ["--mixed_precision", "--amp_dtype", "bf16"], "fp16-mixed": ["--mixed_precision"]}


def _load(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def port() -> ModuleType:
    return _load(PORT)


@pytest.fixture(scope="module")
def plain() -> ModuleType:
    return _load(PLAIN)


def run(module: ModuleType, *extra: str) -> tuple[dict[str, Any], dict[torch.dtype, int]]:
    """``main(TINY + extra)``: the result and the dtypes the rasteriser kernel was handed."""
    module.KERNEL_DTYPES.clear()
    result = module.main([*TINY, *extra])
    return result, dict(module.KERNEL_DTYPES)


@pytest.fixture(scope="module")
def fp32_result(port: ModuleType) -> dict[str, Any]:
    result, kernel = run(port)
    assert kernel == {torch.float32: ITERATIONS + 1}  # + the target's render
    return result


def assert_trained(result: dict[str, Any]) -> None:
    assert math.isfinite(result["first_loss"]) and math.isfinite(result["final_loss"])
    assert result["final_loss"] < 0.5 * result["first_loss"]


def test_port_changes_nothing_in_fp32(
    port: ModuleType, plain: ModuleType, fp32_result: dict[str, Any]
) -> None:
    assert_trained(fp32_result)
    first = fp32_result["densified"][0]
    assert (first["iteration"], first["cloned"], first["pruned"]) == (10, 12, 6)
    assert run(plain)[0] == fp32_result  # bit for bit: the port adds nothing to an fp32 run


@pytest.mark.parametrize("mode", sorted(MIXED))
def test_mixed_modes_densify_like_fp32(
    mode: str,
    port: ModuleType,
    fp32_result: dict[str, Any],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    steps: list[tuple[int, int, float | None]] = []
    real_step = PrecisionOptimizer.step

    def step(self: PrecisionOptimizer) -> Any:
        outcome = real_step(self)
        steps.append((id(self), outcome.step, outcome.loss_scale))
        return outcome

    monkeypatch.setattr(PrecisionOptimizer, "step", step)
    result, kernel = run(port, *MIXED[mode])
    assert capsys.readouterr().out.startswith(f"ampkit: precision={mode} autocast=cpu/")
    assert kernel == {torch.float32: ITERATIONS + 1}  # the custom Function saw float32 only
    assert_trained(result)
    assert result["densified"][0] == fp32_result["densified"][0]
    # One PrecisionOptimizer throughout: rebind() kept its step counter across the rebuild (a new one restarts at 1).
    assert len({owner for owner, _, _ in steps}) == 1
    assert [n for _, n, _ in steps] == list(range(1, ITERATIONS + 1))
    assert {scale for _, _, scale in steps} == ({65536.0} if mode == "fp16-mixed" else {None})


def test_without_unscale_fp16_densification_reads_scaled_gradients(
    port: ModuleType, fp32_result: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The line the port adds for densification: without it the statistics are 65536x too large.
    monkeypatch.setattr(PrecisionOptimizer, "unscale_", lambda self: None)
    result, _ = run(port, "--mixed_precision", "--iterations", "11")
    assert result["densified"][0]["cloned"] == 24 != fp32_result["densified"][0]["cloned"]


def test_true_half_mode_keeps_the_kernel_in_fp32(
    port: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    result, kernel = run(port, "--precision", "bf16-true")  # --precision: added by add_precision_args
    assert capsys.readouterr().out.startswith(
        "ampkit: precision=bf16-true autocast=off grad_scaler=off tf32=off params=bfloat16\n"
    )
    assert kernel == {torch.float32: ITERATIONS + 1}
    assert_trained(result)


def test_plain_script_hands_the_kernel_bf16_under_its_own_autocast(plain: ModuleType) -> None:
    plain.KERNEL_DTYPES.clear()
    with pytest.raises(TypeError, match=r"float32 tensors only, got \['torch.bfloat16', 'torch.float32'\]"):
        plain.main([*TINY, "--mixed_precision", "--amp_dtype", "bf16"])
    assert plain.KERNEL_DTYPES[torch.bfloat16] == 1


@pytest.mark.parametrize(
    "flags, mode",
    [
        ([], "fp32"),
        (["--amp_dtype", "bf16"], "fp32"),  # the script's dtype counts only once its switch is on
        (["--mixed_precision"], "fp16-mixed"),  # the script's default --amp_dtype fp16
        (["--mixed_precision", "--amp_dtype", "bf16"], "bf16-mixed"),
        (["--amp"], "bf16-mixed"),  # added by add_precision_args; bf16 on a CPU
        (["--precision", "bf16-mixed"], "bf16-mixed"),
    ],
)
def test_flags_resolve_as_the_script_means_them(
    flags: list[str], mode: str, port: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    run(port, "--iterations", "1", *flags)
    assert capsys.readouterr().out.startswith(f"ampkit: precision={mode} ")


def test_out_writes_the_result_atomically(port: ModuleType, tmp_path: Path) -> None:
    result, _ = run(port, "--iterations", "2", "--out", str(tmp_path / "result.json"))
    assert json.loads((tmp_path / "result.json").read_text()) == result
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"]


BAD = [
    pytest.param(
        ["--iterations", "0"], "argument --iterations: expected an integer >= 1, got '0'", id="iterations-0"
    ),
    pytest.param(
        ["--size", "8"], "argument --size: expected an integer >= 11, got '8'", id="size-below-ssim-window"
    ),
    pytest.param(
        ["--points", "many"], "argument --points: expected an integer >= 1, got 'many'", id="points-not-int"
    ),
    pytest.param(
        ["--amp_dtype", "fp32"], "argument --amp_dtype: invalid choice: 'fp32'", id="amp-dtype-choice"
    ),
    pytest.param(["--precision", "fp32", "--mixed_precision"], "conflicting precision flags", id="conflict"),
    pytest.param(["--precision", "fp17"], "unknown precision 'fp17'; valid: fp64, fp32", id="unknown-mode"),
    pytest.param(["--precision", "int8-qat"], "prepare() needs an nn.Module", id="qat-needs-module"),
]


@pytest.mark.parametrize("argv, needle", BAD)
def test_bad_input_exits_2_with_an_error_line_and_writes_nothing(
    argv: list[str],
    needle: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sys, "argv", [str(PORT), *TINY, "--out", str(tmp_path / "r.json"), *argv])
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_path(str(PORT), run_name="__main__")
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert needle in err.splitlines()[-1] and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


def test_custom_backward_matches_autograd(port: ModuleType) -> None:
    gen = torch.Generator().manual_seed(0)
    model = port.GaussianModel.random(5, 12, gen, torch.device("cpu"))
    pix = port.pixel_centres(12, torch.device("cpu"))
    inputs = [model._xy, model.conics(), torch.sigmoid(model._opacity), model.features()]
    leaves = [t.detach().clone().requires_grad_(True) for t in inputs]
    weights = torch.randn(pix.shape[0], 5, generator=gen)

    def reference(
        means: torch.Tensor, conics: torch.Tensor, opacity: torch.Tensor, feats: torch.Tensor
    ) -> torch.Tensor:
        dx, dy = (pix[:, None, :] - means[None]).unbind(2)
        a, b, c = conics.unbind(1)
        return (opacity.T * torch.exp(-(a * dx * dx / 2 + b * dx * dy + c * dy * dy / 2))) @ feats

    custom = torch.autograd.grad((port.Rasterize.apply(*leaves, pix) * weights).sum(), leaves)
    expected = torch.autograd.grad((reference(*leaves) * weights).sum(), leaves)
    for got, want in zip(custom, expected):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)


# -- docs/adopt.md shows the port as a diff, which must be the real one -------------------------------


def doc_diff() -> list[str]:
    blocks = re.findall(r"```diff\n(.*?)```", ADOPT.read_text(), flags=re.S)
    assert len(blocks) == 1, "docs/adopt.md holds one ```diff block: the port"
    return blocks[0].splitlines()


def apply_unified_diff(source: list[str], diff: list[str]) -> list[str]:
    """``source`` with the hunks of ``diff`` applied; every context and removed line must match."""
    out: list[str] = []
    at = 0  # next unread line of source
    for line in diff:
        if line.startswith(("--- ", "+++ ")):
            continue
        hunk = re.match(r"@@ -(\d+)(?:,\d+)? \+\d+(?:,\d+)? @@", line)
        if hunk:
            start = int(hunk.group(1)) - 1
            assert start >= at, "hunks out of order"
            out += source[at:start]
            at = start
        elif line.startswith("+"):
            out.append(line[1:])
        else:
            assert line[:1] in (" ", "-") and source[at] == line[1:], (
                f"diff does not match the plain script at {line!r}"
            )
            if line.startswith(" "):
                out.append(source[at])
            at += 1
    return out + source[at:]


def test_adopt_md_shows_the_real_port_in_at_most_15_lines() -> None:
    diff = doc_diff()
    changed = [line for line in diff if line[:1] in "+-" and not line.startswith(("+++ ", "--- "))]
    assert 0 < len(changed) <= 15
    assert apply_unified_diff(PLAIN.read_text().splitlines(), diff) == PORT.read_text().splitlines(), (
        "docs/adopt.md's diff is stale: paste the output of `diff -u --label examples/splat_train_plain.py "
        "--label examples/splat_train.py examples/splat_train_plain.py examples/splat_train.py`"
    )
    text = ADOPT.read_text()
    for line in changed:  # every added line is explained: quoted verbatim in the text below the diff
        if line.startswith("+") and line[1:].strip():
            assert f"`{line[1:].strip()}`" in text, f"docs/adopt.md does not explain {line!r}"
