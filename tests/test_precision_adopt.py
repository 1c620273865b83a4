"""Adopting ampkit in an existing training script (issue 9): the script's own precision flags,
parameters outside an nn.Module, custom autograd Functions, and warnings at the user's line."""

from __future__ import annotations

import argparse
import re

import pytest
import torch
from conftest import CPU_PLAIN
from torch import nn

from ampkit import Precision, PrecisionWarning, add_precision_args, rewrite_legacy_flags
from ampkit.errors import UsageError
from ampkit.precision import PrecisionError, fp32_custom_bwd, fp32_custom_fwd


@pytest.fixture(autouse=True)
def _no_amp_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """USE_AMP / AMP_DTYPE in the caller's environment would fill in a mode where no flag asks for one."""
    monkeypatch.delenv("USE_AMP", raising=False)
    monkeypatch.delenv("AMP_DTYPE", raising=False)


def splat_parser() -> argparse.ArgumentParser:
    """The flags of a Gaussian-splatting ``train.py``, defined before ampkit sees the parser."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--iterations", type=int, default=10)
    parser.add_argument("--mixed_precision", action="store_true")
    parser.add_argument("--amp_dtype", choices=["fp16", "bf16"], default="fp16")
    return parser


SCRIPT_FLAGS = [
    ([], "fp32"),  # no switch: fp32, although the script's amp_dtype defaults to fp16
    (["--amp_dtype", "bf16"], "fp32"),  # the dtype only counts once the switch is on
    (["--mixed_precision"], "fp16-mixed"),  # the switch with the script's default dtype
    (["--mixed_precision", "--amp_dtype", "bf16"], "bf16-mixed"),
    (["--amp_dtype", "bf16", "--mixed_precision"], "bf16-mixed"),
    (["--amp"], "bf16-mixed"),  # ampkit's --amp on a CPU; the script's default dtype is not a request
    (["--precision", "bf16-true"], "bf16-true"),  # ampkit's flags still work beside the script's
    (["--precision", "fp16-mixed", "--mixed_precision"], "fp16-mixed"),  # agreeing flags
]


@pytest.mark.parametrize(("argv", "mode"), SCRIPT_FLAGS)
def test_script_flags_are_read_as_the_script_means_them(argv: list[str], mode: str) -> None:
    parser = add_precision_args(splat_parser())  # no "conflicting option string"
    args = parser.parse_args(argv)
    assert Precision.from_args(args, caps=CPU_PLAIN).name == mode
    assert args.iterations == 10


def test_only_missing_flags_are_added_and_twice_is_harmless() -> None:
    parser = add_precision_args(add_precision_args(splat_parser()))
    mine = [a for a in parser._actions if "--mixed_precision" in a.option_strings]
    assert len(mine) == 1 and mine[0].option_strings == ["--mixed_precision"]  # the script's, untouched
    assert "--precision" in parser._option_string_actions and "--keep-fp32" in parser._option_string_actions
    assert parser.ampkit_precision_flags.added == {"precision", "amp", "keep_fp32", "fp8_emulate"}
    with pytest.raises(PrecisionError, match="conflicting precision flags"):
        Precision.from_args(parser.parse_args(["--precision", "fp32", "--mixed_precision"]))


def test_script_flag_with_its_own_dest_and_spelling() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mixed-precision", dest="use_amp", action="store_true")
    add_precision_args(parser)
    assert "--mixed_precision" not in parser._option_string_actions  # no second spelling bolted on
    assert Precision.from_args(parser.parse_args(["--mixed-precision"])).name == "fp16-mixed"
    assert Precision.from_args(parser.parse_args([])).name == "fp32"


def test_ampkits_own_amp_dtype_without_a_switch_stays_an_error() -> None:
    parser = add_precision_args(argparse.ArgumentParser())
    with pytest.raises(PrecisionError, match="--amp_dtype bf16 needs --mixed_precision or --amp"):
        Precision.from_args(parser.parse_args(["--amp_dtype", "bf16"]))
    assert Precision.from_args(parser.parse_args(["--mixed_precision"])).name == "fp16-mixed"


def test_a_namespace_that_never_met_ampkit_is_read_as_the_scripts() -> None:
    args = splat_parser().parse_args([])
    assert Precision.from_args(args).name == "fp32"
    assert Precision.from_args(splat_parser().parse_args(["--mixed_precision"])).name == "fp16-mixed"


# -- prepare(): parameters that do not live in an nn.Module -------------------------------------
class Gaussians:
    """A splatting model: plain attributes holding parameters, plus things that are not tensors."""

    def __init__(self) -> None:
        gen = torch.Generator().manual_seed(0)
        self._xyz = nn.Parameter(torch.randn(6, 3, generator=gen))
        self._opacity = nn.Parameter(torch.randn(6, 1, generator=gen))
        self._scaling = nn.Parameter(torch.randn(6, 3, generator=gen))
        self.counts = torch.zeros(6, dtype=torch.int32)  # not floating: never cast
        self.max_sh_degree = 3
        self.activation = torch.sigmoid
        self.optimizer: torch.optim.Optimizer | None = None


@pytest.mark.parametrize("mode", ["bf16-true", "fp16-true", "fp64"])
def test_prepare_mapping_casts_in_place_and_keeps_named_tensors(mode: str) -> None:
    g = Gaussians()
    g.optimizer = torch.optim.Adam([g._xyz, g._opacity, g._scaling], lr=1e-2)
    g._opacity.grad = torch.ones(6, 1)
    xyz, opacity = g._xyz, g._opacity
    prec = Precision(mode, "cpu", keep_fp32="re:^_xyz$")
    attrs = vars(g)
    assert prec.prepare(attrs) is attrs
    dtype = prec.spec.param_dtype
    assert g._xyz is xyz and g._opacity is opacity  # the same objects: the optimizer still holds them
    assert g._xyz.dtype == (
        torch.float32 if prec.spec.is_true_low else dtype
    )  # kept by keep_fp32 (true-half)
    assert g._opacity.dtype == g._scaling.dtype == dtype
    assert g._opacity.grad is not None and g._opacity.grad.dtype == dtype
    assert g.counts.dtype == torch.int32 and g.max_sh_degree == 3
    assert g.optimizer.param_groups[0]["params"][1] is g._opacity
    (g._opacity.float().sum() + g._xyz.sum()).backward()
    g.optimizer.step()  # steps the cast tensors


def test_prepare_iterable_and_mixed_modes_keep_fp32() -> None:
    net = nn.Linear(3, 2)
    params = list(net.parameters())
    assert Precision("bf16-true").prepare(params) is params
    assert all(p.dtype == torch.bfloat16 for p in net.parameters())  # identity kept: the module sees it
    g = Gaussians()
    Precision("bf16-mixed").prepare(vars(g))
    assert g._xyz.dtype == torch.float32  # mixed modes keep fp32 weights
    gen = (p for p in [g._xyz])
    Precision("fp16-true").prepare(gen)
    assert g._xyz.dtype == torch.float16
    assert Precision("bf16-true").describe(vars(g)).endswith("params=float16+float32")  # what is really there


BAD_PREPARE = [
    (Gaussians(), "unsupported type 'Gaussians'"),
    ("weights.pt", "unsupported type 'str'"),
    (3, "unsupported type 'int'"),
    ([torch.zeros(2), "x"], "item 1 of the list is of type 'str'"),
    ({"lr": 0.1, "name": "xyz"}, "the dict holds no tensors or modules"),
]


@pytest.mark.parametrize(("obj", "needle"), BAD_PREPARE)
def test_prepare_refuses_anything_else_in_one_line(obj: object, needle: str) -> None:
    with pytest.raises(UsageError, match=re.escape(needle)) as err:
        Precision("bf16-true").prepare(obj)
    message = str(err.value)
    assert "\n" not in message and "valid: an nn.Module, an iterable of parameters/tensors" in message


def test_prepare_int8_qat_needs_a_module() -> None:
    with pytest.raises(UsageError, match=re.escape("int8-qat: prepare() needs an nn.Module")):
        Precision("int8-qat").prepare(vars(Gaussians()))


# -- custom autograd Functions ---------------------------------------------------------------------
def make_rasteriser(fwd_deco, bwd_deco):  # type: ignore[no-untyped-def]
    """A custom Function that records what its forward saw."""
    seen: dict[str, object] = {}

    class Rasterise(torch.autograd.Function):
        @staticmethod
        @fwd_deco
        def forward(ctx, means, colors):  # type: ignore[no-untyped-def, override]
            seen["dtypes"] = (means.dtype, colors.dtype)
            seen["autocast"] = torch.is_autocast_enabled("cpu")
            ctx.save_for_backward(means, colors)
            return (means @ colors.T).sum(-1)

        @staticmethod
        @bwd_deco
        def backward(ctx, grad):  # type: ignore[no-untyped-def, override]
            means, colors = ctx.saved_tensors
            seen["bwd_dtype"] = grad.dtype
            return grad[:, None] * colors.sum(0), grad.sum() * means.sum(0).expand_as(colors)

    return Rasterise, seen


@pytest.mark.parametrize("called", [False, True])
@pytest.mark.parametrize("mode", ["bf16-mixed", "bf16-true"])
def test_prec_custom_fwd_sees_float32_and_backward_works(called: bool, mode: str) -> None:
    prec = Precision(mode, "cpu")
    fwd, bwd = (prec.custom_fwd(), prec.custom_bwd()) if called else (prec.custom_fwd, prec.custom_bwd)
    rasterise, seen = make_rasteriser(fwd, bwd)
    means = nn.Parameter(torch.randn(5, 3))
    colors = nn.Parameter(torch.randn(4, 3))
    prec.prepare([means, colors])
    with prec.autocast():
        projected = means @ torch.eye(3, dtype=means.dtype)  # bf16 in either mode
        assert projected.dtype == torch.bfloat16
        out = rasterise.apply(projected, colors)
    assert seen["dtypes"] == (torch.float32, torch.float32) and seen["autocast"] is False
    assert out.dtype == torch.float32
    out.sum().backward()
    assert seen["bwd_dtype"] == torch.float32
    assert means.grad is not None and means.grad.dtype == means.dtype and torch.isfinite(means.grad).all()
    assert colors.grad is not None and colors.grad.shape == colors.shape


def bare_fwd() -> None:
    @fp32_custom_fwd  # the misuse: no device
    def forward(ctx, x):  # type: ignore[no-untyped-def]
        return x


MISUSE = [
    (lambda: fp32_custom_fwd(), "@fp32_custom_fwd() needs the device"),
    (lambda: fp32_custom_bwd(), "@fp32_custom_bwd() needs the device"),
    (bare_fwd, "@fp32_custom_fwd needs the device"),
    (lambda: fp32_custom_bwd(lambda ctx, g: g), "@fp32_custom_bwd needs the device"),
    (lambda: fp32_custom_fwd("gpu"), "device_type='gpu'): not a device type with autocast"),
]


@pytest.mark.parametrize(("decorate", "needle"), MISUSE)
def test_fp32_custom_fwd_without_a_device_fails_at_decoration(decorate, needle: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(PrecisionError, match=re.escape(needle)) as err:
        decorate()
    assert "\n" not in str(err.value)
    if "needs the device" in needle:
        assert "device_type=" in str(err.value) and "prec.custom_fwd" in str(err.value)


def test_fp32_custom_fwd_with_a_device_still_works() -> None:
    rasterise, seen = make_rasteriser(fp32_custom_fwd("cpu"), fp32_custom_bwd(torch.device("cpu")))
    means = torch.randn(5, 3, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        rasterise.apply(means.bfloat16(), torch.randn(4, 3)).sum().backward()
    assert seen["dtypes"] == (torch.float32, torch.float32) and means.grad is not None


# -- warnings point at the user's line --------------------------------------------------------------
def test_fit_warnings_point_at_the_users_line() -> None:
    with pytest.warns(PrecisionWarning, match="no fp16 arithmetic in hardware") as direct:
        Precision("fp16-mixed", "cpu", caps=CPU_PLAIN)
    args = add_precision_args(splat_parser()).parse_args(["--mixed_precision"])
    with pytest.warns(PrecisionWarning, match="no fp16 arithmetic in hardware") as via_args:
        Precision.from_args(args, caps=CPU_PLAIN)
    with pytest.warns(PrecisionWarning) as via_env:
        Precision.from_env({"USE_AMP": "1", "AMP_DTYPE": "fp16"}, caps=CPU_PLAIN)
    for record in (*direct, *via_args, *via_env):
        assert record.filename == __file__, record.filename


def test_legacy_flag_deprecation_points_at_the_users_line() -> None:
    with pytest.warns(DeprecationWarning, match="--gt_dca_mixed_precision is deprecated") as seen:
        assert rewrite_legacy_flags(["--gt_dca_mixed_precision"]) == ["--mixed_precision"]
    assert [w.filename for w in seen] == [__file__]
