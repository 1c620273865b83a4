"""``ampkit train``: train a built-in or user task under one precision switch."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ..precision.args import add_precision_args
from .numerics_args import add_nonfinite_args, check_nonfinite_args, nonfinite_fields, numerics_summary
from .parser import add_flag, path_arg
from .run_args import TASK_HELP as TASK_HELP
from .run_args import add_compile_flag as add_compile_flag
from .run_args import add_run_args as add_run_args
from .run_args import check_mode_flags as check_mode_flags
from .run_args import check_run_args as check_run_args
from .run_args import checked_mode as checked_mode
from .tracking import add_log_args
from .train_out import check_earlier_run, stop_hint


def register(subparsers: Any) -> None:
    """Add ``ampkit train``."""
    parser = subparsers.add_parser("train", help="train a task under a precision", description=__doc__)
    add_run_args(parser)
    add_precision_args(parser)
    add_flag(parser, "steps", type=int, default=None, help="optimizer steps (default 200 unless --epochs)")
    add_flag(parser, "epochs", type=float, default=None, help="passes over the training set")
    add_flag(parser, "accumulate", type=int, default=1, help="micro-batches per optimizer step")
    add_flag(
        parser, "clip-grad-norm", type=float, default=None, help="clip unscaled gradients to this 2-norm"
    )
    add_flag(parser, "clip-grad-value", type=float, default=None, help="clip unscaled gradients to [-v, v]")
    add_flag(parser, "lr", type=float, default=None, help="AdamW learning rate (default: the task's)")
    add_flag(
        parser,
        "bf16-update",
        default="plain",
        choices=("plain", "kahan", "stochastic"),
        help="bf16-true: how bf16 weights take updates (kahan/stochastic keep small updates from rounding away)",
    )
    add_compile_flag(parser)
    add_flag(
        parser, "out", type=path_arg, default=Path("runs/train"), help="run folder: metrics.json, last.pt"
    )
    add_flag(parser, "checkpoint-every", type=int, default=0, help="write out/last.pt every N steps")
    add_flag(parser, "resume", action="store_true", help="continue from out/last.pt if it exists")
    add_flag(
        parser,
        "overwrite",
        action="store_true",
        help="replace the earlier run in --out (its last.pt and metrics.json); without it, or "
        "--resume, a folder holding an earlier run is refused",
    )
    add_flag(
        parser,
        "resume-any",
        action="store_true",
        help="--resume with the checkpoint's own task, size, seed, batch size and accumulation "
        "(--resume refuses flags that differ from them)",
    )
    add_flag(parser, "eval-every", type=int, default=0, help="evaluate every N steps (0: at the end)")
    add_flag(parser, "no-progress", action="store_true", help="no progress bar")
    add_flag(parser, "nproc", type=int, default=1, help="processes to train on (torchrun sets its own)")
    add_flag(parser, "strategy", default="ddp", choices=("ddp", "fsdp"), help="multi-process: DDP or FSDP2")
    add_flag(parser, "timeout", type=float, default=None, help="--nproc: seconds before the job is stopped")
    add_nonfinite_args(parser)
    add_log_args(parser, "OUT")
    parser.set_defaults(func=run, stop_hint=stop_hint)


def check_train_args(args: argparse.Namespace) -> str:
    """Every ``ampkit train`` flag, checked before training starts; returns the device."""
    from ..engine.distributed import world_from_env
    from ..errors import UsageError
    from .checks import MAX_EPOCHS, check_out_dir, check_positive, check_task

    check_positive(args.accumulate, "--accumulate", integer=True)
    check_positive(args.nproc, "--nproc", integer=True)
    check_positive(args.epochs, "--epochs")
    if args.epochs is not None and args.epochs > MAX_EPOCHS:
        raise UsageError(f"--epochs {args.epochs:g}: too many passes; valid: a number in (0, {MAX_EPOCHS:_}]")
    if args.epochs is not None and args.steps is not None:
        raise UsageError(
            f"--steps {args.steps} and --epochs {args.epochs:g} both given; valid: one of them "
            "(--steps counts optimizer steps, --epochs passes over the training set)"
        )
    check_positive(args.clip_grad_norm, "--clip-grad-norm")
    check_positive(args.clip_grad_value, "--clip-grad-value")
    check_positive(
        args.checkpoint_every, "--checkpoint-every", allow_zero=True, integer=True, note="0: at the end only"
    )
    check_positive(args.eval_every, "--eval-every", allow_zero=True, integer=True, note="0: at the end")
    check_positive(args.timeout, "--timeout", note="seconds")
    check_nonfinite_args(args)
    check_out_dir(args.out, "--out")
    device = check_run_args(args)
    if args.nproc > 1 and world_from_env()[1] == 1:  # build the task once here, not fail N ranks later
        check_task(args.task, args.size, build=True)
        _check_batch_for_launch(args)  # the ranks would each refuse it; say it once, before launching
    return device


def _check_batch_for_launch(args: argparse.Namespace) -> None:
    """``--batch-size`` within the task's training set, checked on a CPU build of the task."""
    import torch

    from ..engine.setup import check_batch_size
    from ..tasks import TaskSpec, build_task

    task = build_task(args.task, TaskSpec(seed=0, batch_size=2, device=torch.device("cpu"), size=args.size))
    check_batch_size(args.batch_size, task, args.size)


def build_config(args: argparse.Namespace) -> Any:
    """TrainConfig from parsed ``train`` arguments (precision resolved through every spelling)."""
    from ..engine import TrainConfig

    device = check_train_args(args)
    mode = checked_mode(args, device)
    check_earlier_run(args)  # last: the flags are right, now what --out holds
    return TrainConfig(
        task=args.task,
        precision=mode,
        keep_fp32=args.keep_fp32,
        device=device,
        steps=args.steps,
        epochs=args.epochs,
        batch_size=args.batch_size,
        accumulate=args.accumulate,
        clip_grad_norm=args.clip_grad_norm,
        clip_grad_value=args.clip_grad_value,
        lr=args.lr,
        seed=args.seed,
        size=args.size,
        out=args.out,
        checkpoint_every=args.checkpoint_every,
        resume=args.resume or args.resume_any,
        resume_any=args.resume_any,
        eval_every=args.eval_every,
        threads=args.threads,
        nproc=args.nproc,
        strategy=args.strategy,
        bf16_update=args.bf16_update,
        fp8_emulate=args.fp8_emulate,
        compile=args.compile,
        **nonfinite_fields(args),
        progress=not args.no_progress and sys.stderr.isatty(),
    )


def run(args: argparse.Namespace) -> int:
    """Train, print the final metrics, write them to ``out/metrics.json``; exit 1 on ``--on-nonfinite stop``."""
    from ..numerics import NonFiniteError

    try:
        return _train_and_report(args)
    except NonFiniteError as err:  # one line naming step, module and mode; not a traceback
        print(f"ampkit train: error: {err} (--on-nonfinite stop)", file=sys.stderr)
        return 1


def _train_and_report(args: argparse.Namespace) -> int:
    """The body of :func:`run`."""
    from ..engine import train
    from ..engine.distributed import world_from_env
    from ..engine.launch import LaunchError, run_distributed
    from .tracking import check_log_args, train_tracked

    config = build_config(args)
    trackers = check_log_args(args, Path(config.out))
    tracked: list[str] = []
    if config.nproc > 1 and world_from_env()[1] == 1:  # not yet inside a launched world: launch it
        try:
            result = run_distributed(config, timeout_s=args.timeout)
        except LaunchError as err:
            print(f"ampkit train: error: {err}", file=sys.stderr)
            return 1
        if trackers:  # the ranks ran elsewhere: the trackers are written from the result
            from ..integrations.trackers import log_train_result

            tracked = log_train_result(trackers, result, Path(config.out), mlflow_uri=args.mlflow_uri)
    elif trackers:
        result, tracked = train_tracked(config, trackers, args.mlflow_uri)
        if world_from_env()[0] != 0:
            return 0
    else:
        result = train(config)
        if world_from_env()[0] != 0:
            return 0  # torchrun: rank 0 prints the summary
    summary = {
        "task": result.task,
        "precision": result.precision,
        "steps": result.history[-1].step if result.history else 0,
        "final_train_loss": result.history[-1].loss if result.history else None,
        "skipped_steps": result.skipped_steps,
        **numerics_summary(result),
        **{f"eval_{k}": v for k, v in result.final.items()},
        **({"compile": _compile_summary(result.compile)} if result.compile else {}),
        **({"trackers": tracked} if tracked else {}),
        "metrics": str(Path(config.out) / "metrics.json"),
    }
    print(json.dumps(summary, indent=2))
    return 0


def _compile_summary(info: dict[str, Any]) -> dict[str, Any]:
    """``--compile``'s outcome: status, backend, reason, compile seconds apart from step times."""
    keys = ("status", "backend", "reason", "compile_s", "compile_steps", "first_step_s")
    return {k: info.get(k) for k in keys if info.get(k) is not None}
