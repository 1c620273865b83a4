"""``ampkit evaluate``: load a checkpoint and evaluate it under a precision (default: the checkpoint's)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ..precision.args import add_precision_args
from .parser import add_flag


def register(subparsers: Any) -> None:
    """Add ``ampkit evaluate``."""
    parser = subparsers.add_parser(
        "evaluate", help="evaluate a checkpoint under a precision", description=__doc__
    )
    parser.add_argument("checkpoint", type=Path, help="a last.pt written by ampkit train (or its run folder)")
    add_flag(parser, "device", default=None, help="torch device (default: cuda if available, else cpu)")
    add_precision_args(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Rebuild the task from the checkpoint's config, load the weights, evaluate, print JSON."""
    from ..engine import TrainConfig, default_device, evaluate, load_checkpoint
    from ..errors import UsageError
    from ..precision import Precision, PrecisionRequest, resolve
    from ..tasks import TaskSpec, build_task

    path = args.checkpoint / "last.pt" if args.checkpoint.is_dir() else args.checkpoint
    if not path.is_file():
        raise UsageError(f"no checkpoint at {path}; give a last.pt or a run folder holding one")
    device = args.device or default_device()
    state = load_checkpoint(path, map_location=device)
    config = TrainConfig.from_dict(state["config"])
    asked = PrecisionRequest(args.precision, args.mixed_precision, args.amp_dtype, args.amp)
    explicit = args.precision or args.mixed_precision or args.amp
    mode = resolve(asked) if explicit else state["precision"]
    if state["precision"] == "int8-qat" and mode != "int8-qat":
        raise UsageError(f"{path} holds a fused, fake-quantised int8-qat model; evaluate it as int8-qat")
    emulate = args.fp8_emulate or config.fp8_emulate
    keep = args.keep_fp32 or state.get("keep_fp32") or None
    precision = Precision(mode, device, keep_fp32=keep, fp8_emulate=emulate)
    task = build_task(config.task, TaskSpec(config.seed, config.batch_size, precision.device, config.size))
    model = precision.prepare(task.model)
    # Weights are stored in the training precision; load_state_dict copies them into this precision's dtypes.
    model.load_state_dict(state["model"])
    model = precision.convert(model)  # int8-qat: real int8 kernels (CPU); other modes: unchanged
    print(precision.describe(model))
    metrics = evaluate(model, task, precision)
    print(
        json.dumps(
            {"checkpoint": str(path), "trained_as": state["precision"], "precision": mode, **metrics},
            indent=2,
        )
    )
    return 0
