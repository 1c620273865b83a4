"""Adopting ampkit in an existing training script (issue 9): the script's own precision flags,
parameters outside an nn.Module, custom autograd Functions, and warnings at the user's line."""

from __future__ import annotations

import argparse
import contextlib
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
    assert out.dtype == torch.float32  # outside a bf16-true model's forward: the loop's float32
    out.sum().backward()
    assert seen["bwd_dtype"] == torch.float32  # custom_bwd hands the backward float32 gradients
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


# -- other projects' own precision flags (QA pass: real scripts ported to ampkit) ------------------
def diffusers_parser() -> argparse.ArgumentParser:
    """HF diffusers / Accelerate example scripts: ``--mixed_precision`` is a TEXT flag."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--mixed_precision", type=str, default=None, choices=["no", "fp16", "bf16", "fp8"])
    return parser


def accelerate_parser() -> argparse.ArgumentParser:
    """A text ``--mixed_precision`` with default "no" and no choices (any value reaches ampkit)."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--mixed_precision", default="no")
    return parser


def timm_parser() -> argparse.ArgumentParser:
    """timm ``train.py``: its own ``--amp`` switch and ``--amp-dtype`` (default float16)."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--amp", action="store_true", default=False)
    parser.add_argument("--amp-dtype", default="float16", type=str)
    return parser


def dtype_parser() -> argparse.ArgumentParser:
    """A script whose ``--amp_dtype`` converts to a torch dtype itself."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--mixed_precision", action="store_true")
    parser.add_argument("--amp_dtype", type=lambda s: getattr(torch, s), default=torch.float16)
    return parser


def hf_parser() -> argparse.ArgumentParser:
    """HF-Trainer-style boolean ``--fp16`` / ``--bf16``."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--fp16", action="store_true")
    parser.add_argument("--bf16", action="store_true")
    return parser


def bare_parser() -> argparse.ArgumentParser:
    return argparse.ArgumentParser()


OTHER_SCRIPTS = [
    # diffusers / Accelerate: the text value is the request ("no" is off, not a switch that is on)
    (diffusers_parser, [], "fp32"),
    (diffusers_parser, ["--mixed_precision", "no"], "fp32"),
    (diffusers_parser, ["--mixed_precision", "fp16"], "fp16-mixed"),
    (diffusers_parser, ["--mixed_precision", "bf16"], "bf16-mixed"),
    (diffusers_parser, ["--mixed_precision", "fp8", "--fp8-emulate"], "fp8-mixed"),
    (diffusers_parser, ["--mixed_precision", "bf16", "--precision", "bf16-mixed"], "bf16-mixed"),  # agree
    (diffusers_parser, ["--mixed_precision", "bf16", "--amp_dtype", "bf16"], "bf16-mixed"),  # ampkit's dtype
    (diffusers_parser, ["--mixed_precision", "no", "--amp"], "bf16-mixed"),  # --amp on a CPU
    (accelerate_parser, [], "fp32"),
    (accelerate_parser, ["--mixed_precision", "NO"], "fp32"),
    (accelerate_parser, ["--mixed_precision", "none"], "fp32"),
    (accelerate_parser, ["--mixed_precision", "false"], "fp32"),
    (accelerate_parser, ["--mixed_precision", "off"], "fp32"),
    (accelerate_parser, ["--mixed_precision", "0"], "fp32"),
    (accelerate_parser, ["--mixed_precision", ""], "fp32"),
    (accelerate_parser, ["--mixed_precision", " BF16 "], "bf16-mixed"),
    (accelerate_parser, ["--mixed_precision", "bfloat16"], "bf16-mixed"),
    # timm: an explicit --amp-dtype is a request even when it equals the script's default
    (timm_parser, [], "fp32"),
    (timm_parser, ["--amp"], "bf16-mixed"),  # --amp alone: autocast's CPU dtype
    (timm_parser, ["--amp", "--amp-dtype", "float16"], "fp16-mixed"),
    (timm_parser, ["--amp", "--amp-dtype=float16"], "fp16-mixed"),
    (timm_parser, ["--amp-dtype", "float16", "--amp"], "fp16-mixed"),
    (timm_parser, ["--amp", "--amp-d", "float16"], "fp16-mixed"),  # argparse's abbreviation
    (timm_parser, ["--amp", "--amp-dtype", "half"], "fp16-mixed"),
    (timm_parser, ["--amp", "--amp-dtype", "fp16"], "fp16-mixed"),
    (timm_parser, ["--amp", "--amp-dtype", "bfloat16"], "bf16-mixed"),
    (timm_parser, ["--amp", "--amp-dtype", "bf16"], "bf16-mixed"),
    (timm_parser, ["--amp-dtype", "float16"], "fp32"),  # the dtype only counts once the switch is on
    # the 3DGS parser with ampkit's --amp: the script's dtype, typed, is a request
    (splat_parser, ["--amp", "--amp_dtype", "fp16"], "fp16-mixed"),
    (splat_parser, ["--amp", "--amp_dtype", "bf16"], "bf16-mixed"),
    (splat_parser, ["--amp", "--amp_dtype=fp16"], "fp16-mixed"),
    (dtype_parser, ["--mixed_precision"], "fp16-mixed"),
    (dtype_parser, ["--mixed_precision", "--amp_dtype", "bfloat16"], "bf16-mixed"),
    # HF Trainer style
    (hf_parser, [], "fp32"),
    (hf_parser, ["--bf16"], "bf16-mixed"),
    (hf_parser, ["--fp16"], "fp16-mixed"),
    (hf_parser, ["--bf16", "--precision", "bf16-mixed"], "bf16-mixed"),
    # the README's legacy per-module flags, accepted by add_precision_args itself
    (bare_parser, ["--gt_dca_mixed_precision"], "fp16-mixed"),
    (bare_parser, ["--gt-dca-mixed-precision"], "fp16-mixed"),
    (bare_parser, ["--gt_dca_mixed_precision", "--gt_dca_amp_dtype", "bf16"], "bf16-mixed"),
    (splat_parser, ["--gt_dca_mixed_precision"], "fp16-mixed"),  # the script's default dtype
    (splat_parser, ["--gt_dca_mixed_precision", "--gt_dca_amp_dtype=bf16"], "bf16-mixed"),
    (diffusers_parser, ["--gt_dca_mixed_precision"], "fp16-mixed"),
]


@pytest.mark.parametrize(
    ("build", "argv", "mode"), OTHER_SCRIPTS, ids=[f"{b.__name__}:{' '.join(a)}" for b, a, _ in OTHER_SCRIPTS]
)
def test_other_projects_flags_resolve_as_their_scripts_mean_them(build, argv: list[str], mode: str) -> None:  # type: ignore[no-untyped-def]
    parser = add_precision_args(build())
    legacy = any(arg.startswith("--gt") for arg in argv)
    with pytest.warns(DeprecationWarning) if legacy else contextlib.nullcontext():
        args = parser.parse_args(argv)
    assert Precision.from_args(args, device="cpu", caps=CPU_PLAIN).name == mode


BAD_SCRIPT_FLAGS = [
    (
        accelerate_parser,
        ["--mixed_precision", "int8"],
        "--mixed_precision 'int8': unknown value; valid: no, fp16, bf16, fp8",
    ),
    (
        accelerate_parser,
        ["--mixed_precision", "yes"],
        "--mixed_precision 'yes': unknown value; valid: no, fp16, bf16, fp8",
    ),
    (
        diffusers_parser,
        ["--mixed_precision", "bf16", "--amp_dtype", "fp16"],
        "conflicting precision flags: --mixed_precision bf16 (= bf16-mixed)",
    ),
    (
        diffusers_parser,
        ["--mixed_precision", "fp16", "--precision", "fp32"],
        "conflicting precision flags: --precision fp32",
    ),
    (
        timm_parser,
        ["--amp", "--amp-dtype", "float8"],
        "unknown --amp_dtype 'float8'; valid: fp16, bf16 (or float16, half, bfloat16)",
    ),
    (
        hf_parser,
        ["--fp16", "--bf16"],
        "conflicting precision flags: --fp16 (= fp16-mixed) and --bf16 (= bf16-mixed); give one of them",
    ),
    (
        hf_parser,
        ["--bf16", "--amp", "--amp_dtype", "fp16"],
        "conflicting precision flags: --amp (= fp16-mixed) and --bf16",
    ),
]


@pytest.mark.parametrize(("build", "argv", "needle"), BAD_SCRIPT_FLAGS)
def test_bad_or_conflicting_script_flags_are_one_line(build, argv: list[str], needle: str) -> None:  # type: ignore[no-untyped-def]
    args = add_precision_args(build()).parse_args(argv)
    with pytest.raises(PrecisionError, match=re.escape(needle)) as err:
        Precision.from_args(args, device="cpu", caps=CPU_PLAIN)
    assert "\n" not in str(err.value)


def test_explicit_fp16_on_a_cpu_warns_at_the_users_line_and_parses_do_not_leak() -> None:
    parser = add_precision_args(timm_parser())
    with pytest.warns(PrecisionWarning, match="no fp16 arithmetic in hardware") as seen:
        prec = Precision.from_args(parser.parse_args(["--amp", "--amp-dtype", "float16"]), caps=CPU_PLAIN)
    assert prec.name == "fp16-mixed" and prec.spec.grad_scaler
    assert [w.filename for w in seen] == [__file__]
    # the same parser again without the flag: the earlier parse's explicit dtype does not stick
    assert Precision.from_args(parser.parse_args(["--amp"]), caps=CPU_PLAIN).name == "bf16-mixed"
    assert parser.parse_args(["--amp"]).amp_dtype == "float16"  # the script still sees its own value


def test_trainer_arguments_object_is_read_without_a_parser() -> None:
    """``Precision.from_args(training_args)``: HF's TrainingArguments is not a namespace, but has .fp16/.bf16."""

    class TrainingArguments:
        fp16, bf16, device = False, True, "cpu"

    assert Precision.from_args(TrainingArguments(), caps=CPU_PLAIN).name == "bf16-mixed"  # type: ignore[arg-type]


def test_legacy_flags_are_hidden_and_warn_at_the_parse_args_line() -> None:
    parser = add_precision_args(splat_parser())
    assert "gt_dca" not in parser.format_help() and "gt-dca" not in parser.format_usage()
    with pytest.warns(
        DeprecationWarning, match="--gt_dca_mixed_precision is deprecated.*use --mixed_precision"
    ) as seen:
        args = parser.parse_args(["--gt_dca_mixed_precision"])
    assert [w.filename for w in seen] == [__file__]
    assert args.mixed_precision is True and not hasattr(args, "gt_dca_mixed_precision")
    # the legacy dtype takes the script's choices
    with pytest.raises(SystemExit), pytest.warns(DeprecationWarning):
        parser.parse_args(["--mixed_precision", "--gt_dca_amp_dtype", "int4"])
    assert "--gt-dca-mixed-precision" in add_precision_args(parser)._option_string_actions  # twice: no clash


@pytest.fixture
def no_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


DEVICES = [
    (
        {"device": "cuda"},
        "--device cuda: no CUDA device here (torch.cuda.is_available() is False); valid: cpu",
    ),
    ({"device": "cuda:1"}, "--device cuda:1: no CUDA device here"),
    (
        {"device": "gpu"},
        "--device 'gpu': unknown device; valid: cpu, cuda, cuda:N, mps, xpu, xpu:N (here: cpu)",
    ),
    ({"device": "cuda", "kw": "cuda"}, "device cuda: no CUDA device here"),
]


@pytest.mark.parametrize(("where", "needle"), DEVICES)
def test_a_device_this_machine_lacks_is_one_line_not_a_traceback(
    no_cuda: None, where: dict[str, str], needle: str
) -> None:
    parser = add_precision_args(argparse.ArgumentParser())
    parser.add_argument("--device", default=where["device"])  # as most scripts do: cuda by default
    args = parser.parse_args(["--amp"])
    with pytest.raises(PrecisionError, match=re.escape(needle)) as err:
        Precision.from_args(args, device=where.get("kw"))
    assert "\n" not in str(err.value)


def test_direct_construction_checks_the_device_too(no_cuda: None, monkeypatch: pytest.MonkeyPatch) -> None:
    from conftest import H100

    with pytest.raises(PrecisionError, match=re.escape("device cuda: no CUDA device here")):
        Precision("bf16-mixed", "cuda")
    with pytest.raises(PrecisionError, match=re.escape("device cuda: no CUDA device here")):
        Precision.from_env({"USE_AMP": "1"}, device="cuda")
    assert Precision("bf16-mixed", "cuda", caps=H100).device.type == "cuda"  # caps given: a played device
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(
        PrecisionError, match=re.escape("device cuda:3: only 1 cuda device(s) here; valid: cpu, cuda")
    ):
        Precision("bf16-mixed", "cuda:3")
