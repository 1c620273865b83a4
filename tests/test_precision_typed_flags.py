"""A script's own precision flags count only when typed: a flag left at its default (Lightning's
``--precision 32-true``) never outranks ``USE_AMP``, a study arm's ``AMPKIT_PRECISION`` or
``ACCELERATE_MIXED_PRECISION``; HF's ``--tf32``; ``HfArgumentParser`` + ``add_precision_args``."""

from __future__ import annotations

import argparse
import logging
import re
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import CPU_BF16

from ampkit import Precision, PrecisionWarning, add_precision_args
from ampkit.precision import PrecisionError, resolve
from ampkit.precision.resolve import request_from_args

Build = Callable[[], argparse.ArgumentParser]


def string_to_bool(text: str) -> bool:  # HF's own converter for bool fields
    return text.lower() in ("yes", "true", "t", "y", "1")


def parser_with(*flags: tuple[str, dict]) -> Build:  # type: ignore[type-arg]
    def build() -> argparse.ArgumentParser:
        parser = argparse.ArgumentParser()
        for name, kwargs in flags:
            parser.add_argument(name, **kwargs)
        return parser

    return build


HF_BOOL = dict(type=string_to_bool, nargs="?", const=True, default=False)  # HF's `fp16: bool = False`
HF_OPT_BOOL = dict(type=string_to_bool, nargs="?", const=True, default=None)  # HF's `tf32: Optional[bool]`
STORE_TRUE = dict(action="store_true")

LIGHTNING = parser_with(("--precision", dict(default="32-true")))
LIGHTNING_INT = parser_with(("--precision", dict(type=int, default=32)))
LIGHTNING_16 = parser_with(("--precision", dict(default="16-mixed")))
BARE = parser_with()
TIMM = parser_with(("--amp", STORE_TRUE), ("--amp-dtype", dict(default="float16")))
SEEDS = parser_with(
    ("--mixed_precision", STORE_TRUE), ("--amp_dtype", dict(choices=["fp16", "bf16"], default="fp16"))
)
SEEDS_BF16 = parser_with(("--mixed_precision", STORE_TRUE), ("--amp_dtype", dict(default="bf16")))
DIFFUSERS = parser_with(("--mixed_precision", dict(default=None, choices=["no", "fp16", "bf16", "fp8"])))
ACCEL_FP16 = parser_with(("--mixed_precision", dict(default="fp16")))
HF_SWITCHES = parser_with(("--fp16", STORE_TRUE), ("--bf16", STORE_TRUE))
HF_TRAINER = parser_with(("--fp16", HF_BOOL), ("--bf16", HF_BOOL), ("--tf32", HF_OPT_BOOL))
HF_BOOLOPT_ON = parser_with(("--bf16", dict(action=argparse.BooleanOptionalAction, default=True)))
MMLAB = parser_with(("--amp", dict(action="store_true", default=False)))


def ampkit_default_bf16() -> argparse.ArgumentParser:
    """A script that sets a default for ampkit's own --precision after adding it."""
    parser = add_precision_args(argparse.ArgumentParser())
    parser.set_defaults(precision="bf16-mixed")
    return parser


# (id, parser, typed argv, its mode (whatever the environment says), the mode of [] without environment)
FAMILIES: list[tuple[str, Build, list[str], str, str]] = [
    ("lightning", LIGHTNING, ["--precision", "32-true"], "fp32", "fp32"),
    ("lightning-int", LIGHTNING_INT, ["--precision", "32"], "fp32", "fp32"),
    ("lightning-16-default", LIGHTNING_16, ["--precision", "16-mixed"], "fp16-mixed", "fp16-mixed"),
    ("ampkit", BARE, ["--precision", "fp32"], "fp32", "fp32"),
    ("ampkit-amp", BARE, ["--amp"], "bf16-mixed", "fp32"),
    ("ampkit-set-defaults", ampkit_default_bf16, ["--precision", "bf16-mixed"], "bf16-mixed", "bf16-mixed"),
    ("timm", TIMM, ["--amp", "--amp-dtype", "float16"], "fp16-mixed", "fp32"),
    ("seeds", SEEDS, ["--mixed_precision"], "fp16-mixed", "fp32"),
    ("seeds-bf16-default", SEEDS_BF16, ["--mixed_precision"], "bf16-mixed", "fp32"),
    ("diffusers", DIFFUSERS, ["--mixed_precision", "no"], "fp32", "fp32"),  # typed "no" beats the env
    ("diffusers-bf16", DIFFUSERS, ["--mixed_precision", "bf16"], "bf16-mixed", "fp32"),
    ("accelerate-fp16-default", ACCEL_FP16, ["--mixed_precision", "fp16"], "fp16-mixed", "fp16-mixed"),
    ("legacy", DIFFUSERS, ["--gt_dca_mixed_precision"], "fp16-mixed", "fp32"),
    ("hf-switches", HF_SWITCHES, ["--bf16"], "bf16-mixed", "fp32"),
    ("hf-trainer", HF_TRAINER, ["--fp16", "True"], "fp16-mixed", "fp32"),
    ("hf-boolopt-on-default", HF_BOOLOPT_ON, ["--bf16"], "bf16-mixed", "bf16-mixed"),
    ("mmlab", MMLAB, ["--amp"], "bf16-mixed", "fp32"),
]

# (id, environment, the mode it names)
ENVS: list[tuple[str, dict[str, str], str | None]] = [
    ("no-env", {}, None),
    ("USE_AMP", {"USE_AMP": "1", "AMP_DTYPE": "fp16"}, "fp16-mixed"),
    ("AMPKIT_PRECISION", {"AMPKIT_PRECISION": "bf16-true"}, "bf16-true"),
    ("ACCELERATE", {"ACCELERATE_MIXED_PRECISION": "bf16"}, "bf16-mixed"),
]

ROWS = [
    pytest.param(build, argv, env, mode, id=f"{fid}:{'typed' if typed else 'default'}:{eid}")
    for fid, build, typed_argv, typed_mode, default_mode in FAMILIES
    for eid, env, env_mode in ENVS
    for typed, argv, mode in (
        (False, [], env_mode or default_mode),  # left at its default: the environment decides
        (True, typed_argv, typed_mode),  # typed (even equal to the default): the flag decides
    )
]


def mode_of(build: Build, argv: list[str], env: dict[str, str]) -> str:
    parser = add_precision_args(build())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the legacy flag's
        args = parser.parse_args(argv)
    return resolve(request_from_args(args), environ=env, device_type="cpu", bf16_in_hardware=True)


@pytest.mark.parametrize(("build", "argv", "env", "mode"), ROWS)
def test_a_flag_counts_only_when_typed(build: Build, argv: list[str], env: dict[str, str], mode: str) -> None:
    assert mode_of(build, argv, env) == mode


def test_without_add_precision_args_every_value_counts_as_typed() -> None:
    """A namespace that never met add_precision_args cannot tell a default from a typed value."""
    args = LIGHTNING().parse_args([])
    assert resolve(request_from_args(args), environ={"USE_AMP": "1"}, bf16_in_hardware=True) == "fp32"


@pytest.mark.usefixtures("outside_study")
def test_from_args_under_use_amp_and_a_study_arm(monkeypatch: pytest.MonkeyPatch) -> None:
    """The QA repro (s10_flags.py lightning under USE_AMP=1) and a study arm's child process."""
    parser = add_precision_args(LIGHTNING())
    monkeypatch.setenv("USE_AMP", "1")
    assert Precision.from_args(parser.parse_args([]), caps=CPU_BF16).name == "bf16-mixed"
    monkeypatch.delenv("USE_AMP")
    monkeypatch.setenv("AMPKIT_PRECISION", "bf16-true")
    with warnings.catch_warnings():
        warnings.simplefilter("error", PrecisionWarning)  # no "the study asked for ... drop the flag"
        assert Precision.from_args(parser.parse_args([]), caps=CPU_BF16).name == "bf16-true"
    with pytest.warns(PrecisionWarning, match="the study asked for bf16-true .* flags say fp32"):
        assert (
            Precision.from_args(parser.parse_args(["--precision", "32-true"]), caps=CPU_BF16).name == "fp32"
        )


LIGHTNING_TF32 = parser_with(("--precision", dict(default="32-true")), ("--tf32", STORE_TRUE))
LIGHTNING_16_TF32 = parser_with(("--precision", dict(default="16-mixed")), ("--tf32", STORE_TRUE))
TF32_ON = parser_with(("--tf32", dict(action="store_true", default=True)))  # on unless --no... never typed
DIFFUSERS_TF32 = parser_with(("--mixed_precision", dict(default=None)), ("--tf32", STORE_TRUE))

# HF's --tf32 True: tf32 where everything else would be fp32; any other mode runs as asked
TF32 = [
    (HF_TRAINER, ["--tf32", "True"], {}, "tf32"),
    (HF_TRAINER, ["--tf32"], {}, "tf32"),
    (HF_TRAINER, ["--tf32", "False"], {}, "fp32"),
    (HF_TRAINER, ["--tf32", "False"], {"USE_AMP": "1", "AMP_DTYPE": "fp16"}, "fp16-mixed"),
    (HF_TRAINER, ["--tf32", "True", "--bf16", "True"], {}, "bf16-mixed"),
    (HF_TRAINER, ["--bf16", "True", "--tf32", "True"], {"AMPKIT_PRECISION": "fp32"}, "bf16-mixed"),
    (HF_TRAINER, ["--tf32", "True", "--fp16", "True"], {}, "fp16-mixed"),
    (HF_TRAINER, ["--tf32", "True"], {"USE_AMP": "1", "AMP_DTYPE": "fp16"}, "fp16-mixed"),
    (HF_TRAINER, ["--tf32", "True"], {"AMPKIT_PRECISION": "bf16-true"}, "bf16-true"),
    (HF_TRAINER, ["--tf32", "True"], {"AMPKIT_PRECISION": "fp32"}, "tf32"),  # the flag wins, with a warning
    (HF_TRAINER, ["--tf32", "True"], {"ACCELERATE_MIXED_PRECISION": "bf16"}, "bf16-mixed"),
    (HF_TRAINER, ["--tf32", "True"], {"ACCELERATE_MIXED_PRECISION": "no"}, "tf32"),
    (HF_TRAINER, ["--tf32", "True", "--precision", "bf16-true"], {}, "bf16-true"),
    (HF_TRAINER, ["--tf32", "True", "--precision", "tf32"], {}, "tf32"),
    (HF_TRAINER, ["--tf32", "True", "--amp"], {}, "bf16-mixed"),
    (LIGHTNING_TF32, ["--tf32"], {}, "tf32"),  # the default 32-true is no fp32 request
    (LIGHTNING_TF32, ["--tf32"], {"USE_AMP": "1"}, "bf16-mixed"),
    (LIGHTNING_16_TF32, ["--tf32"], {}, "fp16-mixed"),  # the script's default mode is not fp32
    (TF32_ON, [], {}, "tf32"),  # a script whose --tf32 defaults on
    (TF32_ON, [], {"AMPKIT_PRECISION": "fp32"}, "fp32"),  # a default never outranks the study
    (TF32_ON, [], {"USE_AMP": "1", "AMP_DTYPE": "fp16"}, "fp16-mixed"),
    (DIFFUSERS_TF32, ["--mixed_precision", "no", "--tf32"], {}, "tf32"),
    (DIFFUSERS_TF32, ["--mixed_precision", "no", "--tf32"], {"USE_AMP": "1"}, "tf32"),
    (DIFFUSERS_TF32, ["--mixed_precision", "bf16", "--tf32"], {}, "bf16-mixed"),
]


@pytest.mark.parametrize(("build", "argv", "env", "mode"), TF32)
def test_tf32_replaces_only_fp32(build: Build, argv: list[str], env: dict[str, str], mode: str) -> None:
    assert mode_of(build, argv, env) == mode


TF32_CONFLICTS = [
    (
        HF_TRAINER,
        ["--tf32", "True", "--precision", "fp32"],
        "--precision fp32 (= fp32) and --tf32 True (= tf32)",
    ),
    (LIGHTNING_TF32, ["--precision", "32-true", "--tf32"], "--precision 32-true (= fp32) and --tf32 True"),
    (HF_TRAINER, ["--tf32", "True", "--bf16", "True", "--fp16", "True"], "--fp16 (= fp16-mixed) and --bf16"),
]


@pytest.mark.parametrize(("build", "argv", "needle"), TF32_CONFLICTS)
def test_tf32_beside_a_typed_fp32_is_one_conflict_line(build: Build, argv: list[str], needle: str) -> None:
    with pytest.raises(PrecisionError, match=re.escape(needle)) as err:
        mode_of(build, argv, {"USE_AMP": "1"})
    assert "\n" not in str(err.value) and str(err.value).startswith("conflicting precision flags:")


def test_tf32_beside_bf16_logs_which_mode_runs(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="ampkit"):
        assert mode_of(HF_TRAINER, ["--bf16", "True", "--tf32", "True"], {}) == "bf16-mixed"
    assert "--bf16 runs bf16-mixed; --tf32 only replaces fp32 (TF32 stays off)" in caplog.text


LIGHTNING_SCRIPT = """
import argparse
from ampkit import Precision, add_precision_args
parser = argparse.ArgumentParser()
parser.add_argument("--precision", default="32-true")  # Lightning's flag, never typed by the study
add_precision_args(parser)
prec = Precision.from_args(parser.parse_args(), device="cpu")
print(prec.describe(), flush=True)
for step in range(1, 4):
    print(f"step {step} loss {1.0 / step:.4f}", flush=True)
print("val acc 0.5", flush=True)
"""


@pytest.mark.usefixtures("outside_study")
def test_compare_runs_every_arm_of_a_script_whose_precision_flag_defaults_to_32(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The QA repro: `ampkit compare --precisions ... -- python s11_transformer.py` ran every arm in fp32."""
    import json

    from ampkit.cli import main

    script = tmp_path / "lightning_style.py"
    script.write_text(LIGHTNING_SCRIPT)
    out = tmp_path / "study"
    parse = ["--parse", r"step (?P<step>\d+) loss (?P<loss>\S+)", "--parse", r"val acc (?P<acc>\S+)"]
    argv = ["compare", "--precisions", "bf16-mixed,bf16-true", "--warmup-steps", "0", *parse]
    code = main([*argv, "--out", str(out), "--", sys.executable, str(script)])
    err = capsys.readouterr().err
    assert code == 0 and "did not run the requested precision" not in err, err
    arms = json.loads((out / "results.json").read_text())["arms"]
    assert {(a["mode"], a["status"], a["ran_precision"]) for a in arms} == {
        ("bf16-mixed", "measured", "bf16-mixed"),
        ("bf16-true", "measured", "bf16-true"),
    }
    logs = "".join(p.read_text() for p in (out / "arms").glob("*.log"))
    assert "the study asked for" not in logs and "precision=bf16-true" in logs
