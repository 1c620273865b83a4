"""``ampkit compare``: train one task under several precisions, each arm in its own process, and measure.

Same seed, data order and hyper-parameters in every arm; outputs a table, results.json,
results.csv, report.md and PNG plots in --out. ``--config study.toml`` runs named
experiments (``--only NAME`` picks one). With ``USE_AMP=1`` (and ``AMP_DTYPE``) in the
environment and no precisions named anywhere, the study compares fp32 with that AMP mode.
Every value is checked before the first arm starts; exit 1 when an arm failed (its row shows
the reason and the end of its stderr), 130 after Ctrl-C (the running arm is stopped).

``ampkit compare [--precisions ...] [--seeds ...] -- COMMAND ARGS...`` studies your own script
instead of a task: COMMAND runs once per (precision, seed), told its precision through the
environment (AMPKIT_PRECISION, USE_AMP/AMP_DTYPE) and placeholders ({precision}, {amp_dtype},
{seed}, {out}, {amp_flags}); its numbers come from ampkit.log or --parse; exit 1 also when a
script ran another precision than its arm asked for.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Any

from .compare_args import add_compare_args

#: Command-line flags that set an Experiment field (None = not given, so TOML values stand).
_EXPERIMENT_FLAGS = ("task", "steps", "warmup_steps", "target_metric", "gpus", "compile")
#: Command-line flags that set a TrainConfig field shared by every arm.
_OVERRIDE_FLAGS = ("device", "size", "batch_size", "threads", "lr", "eval_every", "keep_fp32")


def register(subparsers: Any) -> None:
    """Add ``ampkit compare`` (its flags: :mod:`.compare_args`)."""
    parser = subparsers.add_parser(
        "compare", help="measure several precisions on one task, one process per arm", description=__doc__
    )
    add_compare_args(parser)
    parser.set_defaults(func=run)


def _check_flags(args: argparse.Namespace) -> None:
    """Numbers given on the command line, each against its flag's rule (one line naming the flag)."""
    from .checks import check_finite, check_keep_fp32, check_positive, check_steps, check_threads
    from .env import check_env

    check_env()
    for name, allow_zero in (("gpus", False), ("batch_size", False), ("warmup_steps", True),
                             ("eval_every", True)):  # fmt: skip
        check_positive(
            getattr(args, name), f"--{name.replace('_', '-')}", allow_zero=allow_zero, integer=True
        )
    check_steps(args.steps)
    check_threads(args.threads)
    check_positive(args.lr, "--lr")
    check_keep_fp32(args.keep_fp32)
    if args.target_metric is not None:
        check_finite(args.target_metric, "--target-metric")


def _cli_values(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, Any]]:
    from ..errors import UsageError
    from ..study.config import parse_precisions, parse_seeds
    from .checks import check_device

    _check_flags(args)
    fields = {k: getattr(args, k) for k in _EXPERIMENT_FLAGS if getattr(args, k) is not None}
    overrides = {k: getattr(args, k) for k in _OVERRIDE_FLAGS if getattr(args, k) is not None}
    if args.device is not None:
        overrides["device"] = check_device(args.device)
    if args.precisions is not None:
        fields["precisions"] = parse_precisions(args.precisions)
    if args.seeds is not None and args.seed is not None:
        raise UsageError("--seed and --seeds both given; valid: one of them, e.g. --seeds 0,1,2")
    if args.seeds is not None or args.seed is not None:
        fields["seeds"] = parse_seeds(args.seeds if args.seeds is not None else str(args.seed))
    return fields, overrides


#: Flags of task studies that a COMMAND study refuses (the script takes its own settings).
_TASK_FLAGS = (
    "task",
    "steps",
    "target_metric",
    "size",
    "batch_size",
    "lr",
    "threads",
    "keep_fp32",
    "eval_every",
    "compile",
)


def _command_values(args: argparse.Namespace, experiments: dict[str, Any] | None) -> dict[str, Any]:
    """The command-study fields the flags set; refuses task flags with a command (and the reverse)."""
    from ..errors import UsageError

    command = list(getattr(args, "study_command", None) or [])
    fields: dict[str, Any] = {}
    if command:
        if args.config is not None:
            raise UsageError(
                f"a COMMAND after -- and --config both given ({command[0]} ...); valid: one of them "
                "(command = [...] in the study file's experiments)"
            )
        if args.task is not None:
            raise UsageError(
                f"--task and a COMMAND both given (--task {args.task}, {command[0]} ...); valid: one of them"
            )
        fields["command"] = tuple(command)
    for key in ("parse", "metric", "amp_flags"):
        if getattr(args, key, None) is not None:
            fields[key] = tuple(args.parse) if key == "parse" else getattr(args, key)
    has_command = bool(command) or any(e.command is not None for e in (experiments or {}).values())
    given = [k for k in _TASK_FLAGS if getattr(args, k, None) is not None]
    if has_command and given:
        flag = "--" + given[0].replace("_", "-")
        raise UsageError(
            f"{flag} applies to --task studies; valid with a COMMAND: the script's own flags after --, "
            "e.g. ampkit compare -- python train.py --epochs 1"
        )
    return fields


def experiments_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """Experiments to run, by name: one from the flags, or those of ``--config`` with the flags on top."""
    from ..engine import default_device
    from ..errors import UsageError
    from ..hardware import device_capabilities
    from ..study import Experiment, load_study, precisions_from_env

    fields, overrides = _cli_values(args)
    if args.config is None or args.study_command:
        fields.update(_command_values(args, None))
    caps = device_capabilities(overrides.get("device") or default_device())
    env_precisions = precisions_from_env(bf16_in_hardware=caps.bf16_in_hardware, device_type=caps.device_type)
    if args.config is None:
        if args.only is not None:
            raise UsageError("--only needs --config study.toml")
        fields.setdefault("precisions", env_precisions)
        return {"compare": Experiment(name="compare", overrides=overrides, **fields)}
    experiments = load_study(args.config, default_precisions=env_precisions)
    if args.only is not None:
        if args.only not in experiments:
            raise UsageError(
                f"--only {args.only}: no such experiment in {args.config}; valid: {', '.join(experiments)}"
            )
        experiments = {args.only: experiments[args.only]}
    fields.update(_command_values(args, experiments))
    return {
        name: dataclasses.replace(exp, **fields, overrides={**exp.overrides, **overrides})
        for name, exp in experiments.items()
    }


def check_study(args: argparse.Namespace) -> dict[str, tuple[Any, Path]]:
    """Every experiment with its output folder, each checked: nothing is written before all pass."""
    from ..study.outfolder import check_arm_files
    from ..study.runner import require_runnable
    from .checks import check_device, check_out_dir, check_task

    experiments = experiments_from_args(args)
    check_out_dir(args.out)
    planned = {}
    for name, exp in experiments.items():
        where = "" if args.config is None else f"--config {args.config} [experiments.{name}] "
        if "device" in exp.overrides:
            exp.overrides["device"] = check_device(exp.overrides["device"], flag=f"{where}device".strip())
        out = args.out / name if args.config is not None else args.out
        check_out_dir(out)
        check_arm_files(out)  # a FIFO or symlink where an arm opens its log: refused, not hung on
        if exp.command is None and (
            args.config is None or args.task is not None
        ):  # a file's task: named there
            check_task(exp.task, exp.overrides.get("size", "default"))
        require_runnable(exp)
        planned[name] = (exp, out)
    return planned


def run(args: argparse.Namespace) -> int:
    """Check everything, then run the study (or each experiment of the study file) and write its outputs.

    Exit 0 when every arm that should run was measured (skipped modes are not failures), 1 when
    any arm failed (the outputs are written all the same), 130 after Ctrl-C and 143 after SIGTERM (the
    running arm is stopped and what was measured is written).
    """
    from ..study.outfolder import study_lock
    from .tracking import check_log_args

    planned = check_study(args)
    trackers = check_log_args(args, args.out)
    with study_lock(args.out):  # one compare per --out: a second is refused (exit 2), nothing changed
        return _run_planned(args, planned, trackers)


def _run_planned(args: argparse.Namespace, planned: dict[str, tuple[Any, Path]], trackers: Any) -> int:
    from rich.console import Console

    from ..study import run_study
    from .signals import current
    from .tracking import study_trackers

    # A pipe or a log file gets a wide table instead of rich's 80-column fallback.
    console = Console() if sys.stdout.isatty() else Console(width=200)
    # SIGTERM (a scheduler's stop, `kill`) ends the study the way Ctrl-C does: arms stopped, results kept.
    stop = current()  # cli.signals turns SIGTERM into the KeyboardInterrupt run_study handles
    failed: list[str] = []
    flagged: list[str] = []  # command arms whose script ran (or did not report) another precision
    total = 0
    try:
        for name, (exp, out) in planned.items():
            tracking = study_trackers(trackers, args, name, exp, out)
            study = run_study(exp, out, console=console, checked=True, trackers=tracking)
            total += sum(1 for arm in study["arms"] if arm["status"] != "skipped")
            failed += [f"{'' if args.config is None else name + '/'}{arm['mode']} ({arm.get('reason')})"
                       for arm in study["arms"] if arm["status"] == "failed"]  # fmt: skip
            flagged += [f"{'' if args.config is None else name + '/'}{arm['mode']} ({arm.get('reason')})"
                        for arm in study["arms"] if arm["status"] == "flagged"]  # fmt: skip
            if study.get("interrupted"):
                print(f"ampkit compare: {stop.words()}: stopped the running arm; wrote what was measured to {out}/",
                      file=sys.stderr)  # fmt: skip
                return stop.exit_code()
    except OSError as err:  # a full disk or an I/O error while writing the outputs
        print(f"ampkit compare: error: {err}", file=sys.stderr)
        return 1
    if failed:
        where = args.out if len(planned) == 1 else f"{args.out}/*"
        print(f"ampkit compare: error: {len(failed)} of {total} arms failed: {'; '.join(failed)}; "
              f"see {where}/report.md", file=sys.stderr)  # fmt: skip
        return 1
    if flagged:
        where = args.out if len(planned) == 1 else f"{args.out}/*"
        print(f"ampkit compare: error: {len(flagged)} of {total} arms did not run the requested precision: "
              f"{'; '.join(flagged)}; see {where}/report.md", file=sys.stderr)  # fmt: skip
        return 1
    return 0
