"""A user's own training script for ``ampkit compare -- COMMAND``: the digits CNN, written out by hand.

It trains exactly what ``ampkit train --task digits`` trains (same model, data, batches, AdamW
and learning rate, same per-step code as ``ampkit.engine.loop.run_step``), but as a script
with its own loop, so a study of it and a ``--task digits`` study give the same losses (fp32:
bit-identical). What makes it studyable is three lines: ``Precision.from_args`` (honours the
arm's ``AMPKIT_PRECISION``), ``ampkit.study_seed`` (the arm's seed) and ``ampkit.log`` (a no-op
when no study runs it)::

    python examples/digits_script.py --steps 200 --mixed_precision --amp_dtype bf16
    ampkit compare --precisions fp32,bf16-mixed --seeds 0,1 -- python examples/digits_script.py --steps 200
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

import torch

import ampkit
from ampkit import Precision, PrecisionOptimizer, add_precision_args, fp32_region
from ampkit.fsutil import write_atomic
from ampkit.tasks import TaskSpec, build_task

#: What ``ampkit train`` uses: AdamW's weight decay (TrainConfig's default) and eps for fp32 weights.
WEIGHT_DECAY, EPS = 0.01, 1e-8
#: The file written into ``--out`` (the arm's folder under a study).
RESULT_NAME = "digits_script.json"


def positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}")
    return value


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--steps", type=positive, default=200, help="optimizer steps")
    parser.add_argument("--size", choices=("default", "small"), default="default", help="CNN width 32 or 8")
    parser.add_argument("--batch-size", type=positive, default=64)
    parser.add_argument("--lr", type=float, default=None, help="AdamW learning rate (default: the task's)")
    parser.add_argument(
        "--seed", type=int, default=ampkit.study_seed(0), help="default: the study arm's seed, else 0"
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--out",
        default=os.environ.get("AMPKIT_OUT"),
        help=f"folder for {RESULT_NAME} (default: the study arm's)",
    )
    add_precision_args(parser)  # --precision, --mixed_precision --amp_dtype, --amp, --keep-fp32, ...
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    prec = Precision.from_args(args)  # flags, else the study's AMPKIT_PRECISION, else USE_AMP, else fp32
    task = build_task("digits", TaskSpec(args.seed, args.batch_size, prec.device, args.size))
    model = prec.prepare(task.model)
    print(prec.describe(model), flush=True)
    adamw = torch.optim.AdamW(
        model.parameters(), lr=args.lr or task.default_lr, weight_decay=WEIGHT_DECAY, eps=EPS
    )
    opt = PrecisionOptimizer(adamw, prec, model=model)

    losses = []
    with prec.scope():  # TF32 flags and default dtype of this mode, restored on exit
        model.train()
        for step in range(args.steps):
            inputs, targets = task.train_batch(step)
            with prec.autocast():
                outputs = model(prec.cast_inputs(inputs))
            with fp32_region():  # the loss in fp32 under every mode
                loss = task.loss_fn(outputs.float(), targets)
            opt.backward(loss)
            outcome = opt.step()
            losses.append(float(loss.detach()))
            ampkit.log({"loss": losses[-1]}, step=step + 1)  # steps counted from 1, as ampkit train does
            if not outcome.applied:
                print(f"step {step + 1}: update skipped ({outcome.reason})", file=sys.stderr)

    model.eval()
    total = loss_sum = metric_sum = 0.0
    with prec.inference():
        for inputs, targets in task.eval_batches():
            outputs = model(prec.cast_inputs(inputs)).float()
            with fp32_region():
                loss_sum += float(task.loss_fn(outputs, targets)) * len(targets)
            metric_sum += task.metric_fn(outputs, targets) * len(targets)
            total += len(targets)
    accuracy, val_loss = metric_sum / total, loss_sum / total
    ampkit.log({"accuracy": accuracy, "val_loss": val_loss}, step=args.steps)
    print(f"val acc {accuracy:.4f} val loss {val_loss:.4f} after {args.steps} steps", flush=True)

    result = {
        "precision": prec.name,
        "seed": args.seed,
        "losses": losses,
        "accuracy": accuracy,
        "val_loss": val_loss,
    }
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        write_atomic(Path(args.out) / RESULT_NAME, json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    try:
        main()
    except ValueError as err:  # a bad precision spelling or flag combination (PrecisionError, UsageError)
        print(f"{sys.argv[0]}: error: {err}", file=sys.stderr)
        sys.exit(2)
