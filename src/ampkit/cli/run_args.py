"""Flags that ``train``, ``evaluate``, ``analyze`` and ``compare`` share, and their checks.

The task, device, size and ``--compile`` flags, :func:`check_run_args` that checks them before any work,
and the precision mode the flags ask for, refused when it cannot run on the device or when a mode-only
flag is given under another mode.
"""

from __future__ import annotations

import argparse

from .parser import add_flag

TASK_HELP = (
    "built-in task (digits, tinygpt, ct) or module:factory — a callable taking an ampkit.tasks.TaskSpec "
    "and returning an ampkit.tasks.Task (model, train_batch(i), eval_batches(), loss_fn, metric_fn)"
)


def add_run_args(parser: argparse.ArgumentParser) -> None:
    """Task, device and size flags shared by train, evaluate and compare."""
    add_flag(parser, "task", default="digits", help=TASK_HELP)
    add_flag(parser, "device", default=None, help="torch device (default: cuda if available, else cpu)")
    add_flag(
        parser,
        "size",
        default="default",
        choices=("default", "small", "gpu"),
        help="task size; small = tiny shapes; gpu = matmul-bound on a GPU (tinygpt: GPT-2 small's shape)",
    )
    add_flag(parser, "batch-size", type=int, default=64, help="samples per micro-batch")
    add_flag(parser, "seed", type=int, default=0, help="seed for model init and data order")
    add_flag(parser, "threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")


def add_compile_flag(parser: argparse.ArgumentParser) -> None:
    """``--compile``: torch.compile the prepared model (train, evaluate, analyze, verify)."""
    add_flag(
        parser,
        "compile",
        action="store_true",
        help="torch.compile the model (inductor) after the precision is applied; where the mode "
        "cannot compile here, or the compile fails, one warning line and the run goes on eager",
    )


def check_run_args(args: argparse.Namespace) -> str:
    """Check the flags of :func:`add_run_args` (and ``--lr``, ``--steps`` where present) before any work.

    Returns the device to use. Numbers first, then the device, then the task (importing a user's
    module runs its top level, so it comes last); nothing is created.
    """
    from .checks import (
        check_device,
        check_int_range,
        check_keep_fp32,
        check_positive,
        check_steps,
        check_task,
        check_threads,
    )
    from .env import check_env

    check_env()
    check_positive(args.batch_size, "--batch-size", integer=True)
    check_int_range(args.seed, "--seed", 0, 2**63 - 1)
    check_threads(args.threads)
    check_steps(getattr(args, "steps", None))
    check_positive(getattr(args, "lr", None), "--lr")
    check_keep_fp32(getattr(args, "keep_fp32", None))
    device = check_device(args.device)
    check_task(args.task, args.size)
    return device


def checked_mode(args: argparse.Namespace, device: str) -> str:
    """The canonical mode the precision flags ask for, refused now if it cannot run on ``device``.

    Fit warnings are left for the run's own ``Precision``, so they are printed once.
    """
    from ..hardware import device_capabilities
    from ..precision import MODES
    from ..precision.fit import check_fit
    from ..precision.resolve import request_from_args, resolve

    caps = device_capabilities(device)
    request = request_from_args(args)
    mode = resolve(request, device_type=caps.device_type, bf16_in_hardware=caps.bf16_in_hardware)
    check_mode_flags(args, mode)
    check_fit(MODES[mode], caps, fp8_emulate=bool(getattr(args, "fp8_emulate", False)))
    return mode


def check_mode_flags(args: argparse.Namespace, mode: str) -> None:
    """Flags that apply to some modes only are refused under the others, alike and before any work:
    ``--fp8-emulate`` (fp8 modes) and ``--bf16-update kahan|stochastic`` (bf16-true)."""
    from ..errors import UsageError
    from ..precision import MODES

    fp8 = [name for name, spec in MODES.items() if spec.fp8]
    if getattr(args, "fp8_emulate", False) and not MODES[mode].fp8:
        raise UsageError(
            f"--fp8-emulate applies to fp8 modes, not {mode}; valid: --precision {' or '.join(fp8)} "
            "with it (or no --fp8-emulate)"
        )
    update = getattr(args, "bf16_update", "plain")
    if update != "plain" and mode != "bf16-true":
        raise UsageError(
            f"--bf16-update {update} applies to bf16-true (bf16 weights), not {mode}; valid: "
            "--precision bf16-true with it (or --bf16-update plain)"
        )
