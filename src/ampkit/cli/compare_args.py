"""The flags of ``ampkit compare``: the task study's, a COMMAND study's and the trackers'."""

from __future__ import annotations

import argparse
from pathlib import Path

from .parser import add_flag, path_arg
from .tracking import add_log_args
from .train import add_run_args


def add_compare_args(parser: argparse.ArgumentParser) -> None:
    """Every ``compare`` flag on ``parser`` (argparse defaults of None mark "not given")."""
    add_run_args(parser)
    # None marks "not given" so a study file's values are not overwritten by argparse defaults.
    parser.set_defaults(task=None, size=None, batch_size=None, seed=None)
    add_flag(
        parser,
        "precisions",
        default=None,
        help="comma-separated modes, or auto (default): every mode run in hardware here",
    )
    add_flag(
        parser,
        "seeds",
        default=None,
        help="comma-separated seeds, one arm process per (precision, seed) (default: 0)",
    )
    add_flag(
        parser,
        "steps",
        type=int,
        default=None,
        help="optimizer steps per arm, warm-up included (default 170)",
    )
    add_flag(
        parser,
        "warmup-steps",
        type=int,
        default=None,
        help="first steps excluded from time/memory/energy (default 20)",
    )
    add_flag(
        parser,
        "target-metric",
        type=float,
        default=None,
        help="report steps, time and energy to first reach this eval metric",
    )
    add_flag(
        parser,
        "eval-every",
        type=int,
        default=None,
        help="evaluate every N steps (default: steps/10 with --target-metric)",
    )
    add_flag(parser, "lr", type=float, default=None, help="AdamW learning rate (default: the task's)")
    add_flag(
        parser, "keep-fp32", default=None, help="modules kept in fp32 in every arm, e.g. LayerNorm,re:^head"
    )
    add_flag(
        parser,
        "gpus",
        type=int,
        default=None,
        help="processes per arm (torchrun-style ranks of the distributed engine, one per GPU; gloo processes on CPU); the batch is split over them",
    )
    add_flag(
        parser,
        "out",
        type=path_arg,
        default=Path("runs/compare"),
        help="output folder (with --config: one sub-folder per experiment)",
    )
    add_flag(
        parser,
        "config",
        type=path_arg,
        default=None,
        help="study TOML file with [experiments.NAME] tables (see docs/study.md)",
    )
    add_flag(parser, "only", default=None, help="with --config: run only the experiment NAME")
    add_flag(
        parser,
        "compile",
        default=None,
        choices=("off", "on", "both"),
        help="torch.compile the arms: on (labelled MODE+compile), both (each mode eager and compiled, side "
        "by side) or off (default); compile time is reported apart from step time",
    )
    add_command_args(parser)
    add_log_args(parser, "OUT")


def add_command_args(parser: argparse.ArgumentParser) -> None:
    """``-- COMMAND ARGS...`` and the flags that read a command's output (docs/study.md)."""
    parser.add_argument(
        "study_command",
        nargs="*",
        metavar="-- COMMAND ARGS",
        help="study your own script instead of --task: run it once per (precision, seed); placeholders "
        "{precision} {amp_dtype} {seed} {out} {amp_flags} in its arguments; AMPKIT_PRECISION, USE_AMP, "
        "AMP_DTYPE ... in its environment",
    )
    add_flag(
        parser,
        "parse",
        action="append",
        default=None,
        help="with a COMMAND: regex with named groups read from each output line, e.g. "
        "'step (?P<step>\\d+) loss (?P<loss>\\S+)' (repeatable)",
    )
    add_flag(
        parser,
        "metric",
        default=None,
        help="with a COMMAND: the logged accuracy-like value, NAME[:max|:min] (default: accuracy or acc)",
    )
    add_flag(
        parser,
        "amp-flags",
        default=None,
        help="with a COMMAND: what {amp_flags} becomes in mixed arms (default: '--mixed_precision --amp_dtype {amp_dtype}')",
    )
