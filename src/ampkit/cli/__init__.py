"""``ampkit`` command line: one sub-command per module in this package.

Each sub-command module defines ``register(subparsers)``, which adds its parser and sets
``func``. Errors a user can fix are one line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
import warnings
from collections.abc import Sequence

from ..errors import UsageError, out_of_memory
from ..precision import PrecisionError
from ..precision.args import rewrite_legacy_flags
from .parser import AmpkitParser
from .signals import StopState, stop_signals

#: Sub-command modules, in the order ``ampkit --help`` lists them.
COMMANDS: tuple[str, ...] = (
    "train",
    "evaluate",
    "doctor",
    "verify",
    "export",
    "convert",
    "inspect",
    "verify_shards",
    "compare",
    "analyze",
    "plan",
)


def build_parser() -> AmpkitParser:
    """The full ``ampkit`` parser with every sub-command registered."""
    parser = AmpkitParser(
        prog="ampkit",
        description="Precision-controlled PyTorch training: one precision switch, precision studies, "
        "reduced-precision datasets, numerics and hardware help.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=AmpkitParser)
    for name in COMMANDS:
        importlib.import_module(f"{__name__}.{name}").register(sub)
    return parser


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:  # type: ignore[no-untyped-def]
    print(f"ampkit: warning: {message}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``ampkit`` console script; returns the exit code."""
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    saved_showwarning = warnings.showwarning
    warnings.showwarning = _show_warning
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("default", DeprecationWarning)
            parser = build_parser()
            raw = list(sys.argv[1:] if argv is None else argv)
            cut = raw.index("--") if "--" in raw else len(raw)  # a study's COMMAND after -- stays as typed
            args = parser.parse_args(rewrite_legacy_flags(raw[:cut]) + raw[cut:])
            if cut == len(raw) - 1 and hasattr(args, "study_command"):  # `compare ... --` and nothing after
                print(
                    f"ampkit {args.command}: error: -- with no COMMAND after it; valid: "
                    f"ampkit {args.command} [flags] -- COMMAND ARGS, or no -- to study --task",
                    file=sys.stderr,
                )
                return 2
            return _run(args)
    finally:
        warnings.showwarning = saved_showwarning


def _run(args: argparse.Namespace) -> int:
    with stop_signals() as stop:  # SIGTERM ends the command the way Ctrl-C does (exit 143)
        try:
            return int(args.func(args) or 0)
        except (PrecisionError, UsageError) as err:
            print(f"ampkit {args.command}: error: {err}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            return _stopped(args, stop)
        # an environment fault (full disk, I/O error, read-only mount): one line, exit 1
        except OSError as err:
            print(f"ampkit {args.command}: error: {describe_os_error(err)}", file=sys.stderr)
            return 1
        except (MemoryError, RuntimeError) as err:  # torch.OutOfMemoryError is a RuntimeError
            why = out_of_memory(err)
            if why is None:
                raise
            print(f"ampkit {args.command}: error: {why}{_smaller(args)}", file=sys.stderr)
            return 2


def _stopped(args: argparse.Namespace, stop: StopState) -> int:
    """One line after Ctrl-C or SIGTERM (with what the command kept, where it says); 130 or 143."""
    hint = getattr(args, "stop_hint", None)
    try:
        kept = hint(args) if hint is not None else None
    except Exception:  # the hint only adds words; the stop line must come out
        kept = None
    print(f"ampkit {args.command}: {stop.words()}" + (f"; {kept}" if kept else ""), file=sys.stderr)
    return stop.exit_code()


def _smaller(args: argparse.Namespace) -> str:
    batch = getattr(args, "batch_size", None)
    if isinstance(batch, int):
        return f"; valid: a --batch-size below {batch} that fits this machine's memory"
    return "; valid: a smaller job, or a machine with more memory"


def describe_os_error(err: OSError) -> str:
    """``<strerror>: <filename>`` (and ``-> <filename2>`` for a rename), or the message when there is none."""
    text = err.strerror or str(err) or type(err).__name__
    if err.filename is not None:
        text += f": {err.filename}"
    if err.filename2 is not None:
        text += f" -> {err.filename2}"
    return text


if __name__ == "__main__":
    sys.exit(main())
