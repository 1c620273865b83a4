"""``ampkit`` command line: one sub-command per module in this package.

Each sub-command module defines ``register(subparsers)``, which adds its parser and sets
``func``. Errors a user can fix are one line on stderr and exit code 2, never a traceback; the
line shows control characters of paths and values as escapes (:func:`ampkit.termtext.visible`).
When stdout's reader goes away (``ampkit inspect DIR | head -1``) the command ends quietly with
:data:`EXIT_PIPE` (the recipe of Python's ``signal`` docs, and what rich's console does itself:
stdout pointed at ``/dev/null`` so that the exit flush cannot fail again, no message, exit 1).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
import warnings
from collections.abc import Sequence

from ..errors import UsageError, out_of_memory
from ..precision import PrecisionError
from ..precision.args import rewrite_legacy_flags
from ..termtext import visible
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
#: Exit status after stdout's reader went away: Python's own on EPIPE (its docs' recipe, rich's too).
EXIT_PIPE = 1


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
        try:
            return _main(argv)
        finally:  # argparse's --help exits: flushed here, a closed pipe is not a message at exit
            sys.stdout.flush()
    except BrokenPipeError:
        if not stdout_closed():
            raise
        return _quiet_exit()
    finally:
        warnings.showwarning = saved_showwarning


def _main(argv: Sequence[str] | None) -> int:
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


def _run(args: argparse.Namespace) -> int:
    with stop_signals() as stop:  # SIGTERM ends the command the way Ctrl-C does (exit 143)
        try:
            code = int(args.func(args) or 0)
            sys.stdout.flush()  # a closed pipe shows here (below), not as a message at the exit
            return code
        except (PrecisionError, UsageError) as err:
            print(f"ampkit {args.command}: error: {visible(err)}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            return _stopped(args, stop)
        except BrokenPipeError as err:
            if stdout_closed():  # `ampkit ... | head -1`: the reader has what it wanted
                return _quiet_exit()
            print(f"ampkit {args.command}: error: {visible(describe_os_error(err))}", file=sys.stderr)
            return 1
        # an environment fault (full disk, I/O error, read-only mount): one line, exit 1
        except OSError as err:
            print(f"ampkit {args.command}: error: {visible(describe_os_error(err))}", file=sys.stderr)
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


def stdout_closed() -> bool:
    """Whether stdout is a pipe (or socket) whose reader has gone: the BrokenPipeError was stdout's."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # not a file (a test's capture)
        return False
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        return True
    except (OSError, ValueError):
        pass
    import select

    if not hasattr(select, "poll"):
        return False
    poller = select.poll()
    poller.register(fd, select.POLLOUT)  # a pipe without a reader reports POLLERR
    return any(events & select.POLLERR for _, events in poller.poll(0))


def _quiet_exit() -> int:
    """No message; stdout pointed at /dev/null so that no later flush fails; :data:`EXIT_PIPE`."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    finally:
        os.close(devnull)
    return EXIT_PIPE


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
