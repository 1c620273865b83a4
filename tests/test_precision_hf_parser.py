"""``HfArgumentParser`` + ``add_precision_args``: a typed ``--precision`` reaches
``Precision.from_args(training_args)`` (HF puts it in a leftover namespace of its own).

The rows run against a stand-in that splits the namespace exactly as HF's
``parse_args_into_dataclasses`` does (frozen dataclasses included), and once against the real
transformers when it is installed."""

from __future__ import annotations

import argparse
import dataclasses
import re
from typing import Any

import pytest
from conftest import CPU_BF16

from ampkit import Precision, add_precision_args
from ampkit.precision import PrecisionError


def string_to_bool(text: str) -> bool:
    return text.lower() in ("yes", "true", "t", "y", "1")


@dataclasses.dataclass
class ModelArguments:
    hidden: int = 16


@dataclasses.dataclass(frozen=True)
class TrainingArguments:  # the precision fields of HF's, frozen to show attributes still arrive
    output_dir: str = "out"
    fp16: bool = False
    bf16: bool = False
    tf32: bool | None = None


class HfLikeParser(argparse.ArgumentParser):
    """Parses the dataclasses' fields as HF does and splits the result as its
    ``parse_args_into_dataclasses`` does (transformers/hf_argparser.py)."""

    def __init__(self, types: tuple[type, ...]) -> None:
        super().__init__()
        self.dataclass_types = types
        for dtype in types:
            for f in dataclasses.fields(dtype):
                if f.type in ("bool", "bool | None"):
                    self.add_argument(
                        f"--{f.name}", type=string_to_bool, nargs="?", const=True, default=f.default
                    )
                else:
                    self.add_argument(f"--{f.name}", default=f.default, type=type(f.default))

    def parse_args_into_dataclasses(self, args: Any = None, return_remaining_strings: bool = False) -> tuple:  # type: ignore[type-arg]
        namespace, remaining = self.parse_known_args(args=args)
        outputs: list[Any] = []
        for dtype in self.dataclass_types:
            keys = {f.name for f in dataclasses.fields(dtype) if f.init}
            inputs = {k: v for k, v in vars(namespace).items() if k in keys}
            for k in keys:
                delattr(namespace, k)
            outputs.append(dtype(**inputs))
        if namespace.__dict__:
            outputs.append(namespace)
        return (*outputs, remaining) if return_remaining_strings else tuple(outputs)


def parse(argv: list[str], **kw: Any) -> tuple[Any, ...]:
    parser = add_precision_args(HfLikeParser((ModelArguments, TrainingArguments)))
    return parser.parse_args_into_dataclasses(argv, **kw)  # type: ignore[attr-defined, no-any-return]


HF_ROWS = [
    ([], {}, "fp32"),
    (["--precision", "bf16-true"], {}, "bf16-true"),
    (["--precision", "bf16-true"], {"USE_AMP": "1", "AMP_DTYPE": "fp16"}, "bf16-true"),
    (["--bf16", "True"], {}, "bf16-mixed"),
    (["--bf16"], {"AMPKIT_PRECISION": "fp32"}, "bf16-mixed"),
    (["--fp16", "False"], {"USE_AMP": "1", "AMP_DTYPE": "fp16"}, "fp16-mixed"),  # a typed off asks nothing
    ([], {"USE_AMP": "1", "AMP_DTYPE": "fp16"}, "fp16-mixed"),
    ([], {"AMPKIT_PRECISION": "bf16-true"}, "bf16-true"),
    (["--tf32", "True"], {}, "tf32"),
    (["--tf32", "True", "--bf16", "True"], {}, "bf16-mixed"),
    (["--precision", "bf16-mixed", "--bf16", "True"], {}, "bf16-mixed"),  # agreeing flags
    (["--amp", "--amp_dtype", "fp16"], {}, "fp16-mixed"),
    (["--mixed_precision", "--amp_dtype", "bf16"], {}, "bf16-mixed"),
]


@pytest.mark.parametrize(("argv", "env", "mode"), HF_ROWS)
@pytest.mark.usefixtures("outside_study")
def test_training_args_and_the_leftover_namespace_both_see_every_flag(
    argv: list[str], env: dict[str, str], mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("USE_AMP", "AMP_DTYPE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    margs, targs, rest = parse(argv)
    for args in (targs, margs, rest):
        assert Precision.from_args(args, device="cpu", caps=CPU_BF16).name == mode


def test_keep_fp32_and_fp8_emulate_reach_the_training_args_too() -> None:
    _, targs, rest, remaining = parse(
        ["--precision", "fp8-mixed", "--fp8-emulate", "--keep-fp32", "LayerNorm", "--extra"],
        return_remaining_strings=True,
    )
    assert remaining == ["--extra"] and targs.precision == "fp8-mixed" and targs.keep_fp32 == "LayerNorm"
    assert rest.bf16 is False and rest.tf32 is None  # HF's fields, copied into the leftover namespace
    prec = Precision.from_args(targs, device="cpu", caps=CPU_BF16)
    assert prec.name == "fp8-mixed" and prec.fp8_emulate and "LayerNorm" in str(prec.keep_fp32)


def test_conflicts_are_one_line_and_the_wrapper_is_installed_once() -> None:
    _, targs, _ = parse(["--precision", "fp32", "--bf16", "True"])
    with pytest.raises(
        PrecisionError, match=re.escape("--precision fp32 (= fp32) and --bf16 (= bf16-mixed)")
    ) as err:
        Precision.from_args(targs, device="cpu", caps=CPU_BF16)
    assert "\n" not in str(err.value)
    parser = add_precision_args(HfLikeParser((TrainingArguments,)))
    wrapped = parser.parse_args_into_dataclasses  # type: ignore[attr-defined]
    assert add_precision_args(parser).parse_args_into_dataclasses is wrapped  # type: ignore[attr-defined]
    # a second parse does not inherit the first one's typed flags
    (first, _) = parser.parse_args_into_dataclasses(["--precision", "bf16-true"])  # type: ignore[attr-defined]
    (second, _) = parser.parse_args_into_dataclasses([])  # type: ignore[attr-defined]
    assert first.precision == "bf16-true" and second.precision is None


@pytest.mark.usefixtures("outside_study")
def test_real_hf_argument_parser(monkeypatch: pytest.MonkeyPatch) -> None:
    """The QA repro (s18_hf_parser.py add --output_dir hf --use_cpu --precision bf16-true)."""
    transformers = pytest.importorskip("transformers")
    monkeypatch.setenv("USE_AMP", "1")  # a typed --precision outranks it; HF's untyped --bf16 does not count
    parser = add_precision_args(
        transformers.HfArgumentParser((ModelArguments, transformers.TrainingArguments))
    )
    argv = ["--output_dir", "hf", "--use_cpu", "--precision", "bf16-true"]
    _, targs, rest = parser.parse_args_into_dataclasses(argv)
    assert Precision.from_args(targs, device="cpu", caps=CPU_BF16).name == "bf16-true"
    assert Precision.from_args(rest, device="cpu", caps=CPU_BF16).name == "bf16-true"
    _, targs, _ = parser.parse_args_into_dataclasses(["--output_dir", "hf", "--use_cpu"])
    assert Precision.from_args(targs, device="cpu", caps=CPU_BF16).name == "bf16-mixed"  # USE_AMP=1 decides
    _, targs, _ = parser.parse_args_into_dataclasses(["--output_dir", "hf", "--use_cpu", "--bf16", "True"])
    assert Precision.from_args(targs, device="cpu", caps=CPU_BF16).name == "bf16-mixed"
