"""``ampkit evaluate``: load a checkpoint and evaluate it under a precision (default: the checkpoint's)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ..precision.args import add_precision_args
from .parser import add_flag, path_arg
from .train import add_compile_flag


def register(subparsers: Any) -> None:
    """Add ``ampkit evaluate``."""
    parser = subparsers.add_parser(
        "evaluate", help="evaluate a checkpoint under a precision", description=__doc__
    )
    parser.add_argument(
        "checkpoint", type=path_arg, help="a last.pt written by ampkit train (or its run folder)"
    )
    add_flag(parser, "device", default=None, help="torch device (default: cuda if available, else cpu)")
    add_flag(
        parser,
        "task",
        default=None,
        help="the checkpoint's task, named by you: needed for a custom module:factory task, which "
        "is never imported because a checkpoint names it (built-in tasks need no --task)",
    )
    add_precision_args(parser)
    add_compile_flag(parser)
    parser.set_defaults(func=run)


def checkpoint_path(given: Path) -> Path:
    """The ``last.pt`` that ``given`` (a file or a run folder) names; a one-line UsageError if none."""
    from ..errors import UsageError

    valid = "valid: a last.pt written by ampkit train, or its run folder"
    path = given / "last.pt" if given.is_dir() else given
    if path.is_file():
        return path
    if given.is_dir():
        why = "the folder holds no last.pt" if not path.exists() else "last.pt is not a file"
    elif given.exists():
        why = "not a regular file"
    else:
        parent = next((p for p in given.parents if p.exists()), None)
        blocked = parent is not None and not parent.is_dir()
        why = f"{parent} is a file, not a folder" if blocked else "no such file or folder"
    raise UsageError(f"no checkpoint at {path} ({why}); {valid}")


def run(args: argparse.Namespace) -> int:
    """Rebuild the task from the checkpoint's config, load the weights, evaluate, print JSON."""
    from ..engine import TrainConfig, evaluate, load_checkpoint
    from ..engine.checkpoint import load_weights
    from ..errors import UsageError
    from ..precision import Precision, PrecisionRequest, resolve
    from ..precision.compile import compile_state
    from ..tasks import TaskSpec, build_task
    from ..tasks.registry import trusted_task
    from .checks import check_device, check_keep_fp32
    from .train import check_mode_flags

    path = checkpoint_path(args.checkpoint)
    device = check_device(args.device)
    check_keep_fp32(args.keep_fp32)  # an empty or unparsable selection, before the checkpoint is read
    state = load_checkpoint(path, map_location=device)
    config = TrainConfig.from_dict(state["config"])
    task_name = trusted_task(config.task, str(path), given=args.task)  # before anything is imported
    asked = PrecisionRequest(args.precision, args.mixed_precision, args.amp_dtype, args.amp)
    explicit = args.precision or args.mixed_precision or args.amp
    mode = state["precision"]
    if explicit:  # --amp depends on the device (bf16 on a CPU and on GPUs with bf16, else fp16)
        from ..hardware import device_capabilities

        caps = device_capabilities(device)
        mode = resolve(asked, device_type=caps.device_type, bf16_in_hardware=caps.bf16_in_hardware)
    check_mode_flags(args, mode)  # --fp8-emulate under a mode without fp8, as train refuses it
    if state["precision"] == "int8-qat" and mode != "int8-qat":
        raise UsageError(f"{path} holds a fused, fake-quantised int8-qat model; evaluate it as int8-qat")
    emulate = args.fp8_emulate or config.fp8_emulate
    keep = args.keep_fp32 or state.get("keep_fp32") or None
    precision = Precision(mode, device, keep_fp32=keep, fp8_emulate=emulate)
    task = build_task(task_name, TaskSpec(config.seed, config.batch_size, precision.device, config.size))
    model = precision.prepare(task.model)
    # Weights are stored in the training precision; load_state_dict copies them into this precision's dtypes.
    load_weights(model, state["model"], path)  # a mismatch is one line naming the file
    model = precision.convert(model)  # int8-qat: real int8 kernels (CPU); other modes: unchanged
    print(precision.describe(model))
    if args.compile:
        model = precision.compile(model)
    metrics = evaluate(model, task, precision)
    state_of = compile_state(model)
    compiled = {"compile": state_of.to_dict()} if state_of is not None else {}
    print(
        json.dumps(
            {
                "checkpoint": str(path),
                "trained_as": state["precision"],
                "precision": mode,
                **metrics,
                **compiled,
            },
            indent=2,
        )
    )
    return 0
