"""An argparse parser whose errors are one line and whose flags accept dash and underscore forms."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, NoReturn

from ..precision.args import both_spellings


class DefaultsFormatter(argparse.HelpFormatter):
    """Appends ``(default: X)`` to a flag's help only where it tells something.

    Not for a default of ``None``, ``False`` or an empty value (the flag is simply off or unset),
    and not when the help text already speaks of its default (``"(default: the task's)"``).
    """

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        if (
            default is None
            or default is False
            or default == argparse.SUPPRESS
            or (isinstance(default, (str, list, tuple, dict)) and not default)
            or "default" in text.lower()
            or "%(default)" in text
            or not (action.option_strings or action.nargs in (argparse.OPTIONAL, argparse.ZERO_OR_MORE))
        ):
            return action.help
        return f"{text} (default: %(default)s)" if text else "(default: %(default)s)"


class AmpkitParser(argparse.ArgumentParser):
    """``ArgumentParser`` that reports a bad command line as one line on stderr, exit code 2."""

    def __init__(self, *args: Any, **kwargs: Any):
        kwargs.setdefault("formatter_class", DefaultsFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: error: {message} (see {self.prog} --help)", file=sys.stderr)
        sys.exit(2)


def add_flag(parser: argparse.ArgumentParser | Any, name: str, **kwargs: Any) -> None:
    """``add_argument`` under both ``--dash-name`` and ``--under_name``."""
    kwargs.setdefault("dest", name.replace("-", "_"))
    parser.add_argument(*both_spellings(name), **kwargs)


def path_arg(text: str) -> Path:
    """``type=`` of a path flag: ``Path(text)``, refusing ``""`` (which ``Path`` reads as the current
    folder, so ``--out ""`` would write there) and NUL bytes (no file name holds one)."""
    if text == "":
        raise argparse.ArgumentTypeError(
            "'' is an empty path; valid: a non-empty path (. for the current folder)"
        )
    if "\x00" in text:
        raise argparse.ArgumentTypeError(f"{text!r} holds a NUL byte; valid: a path without NUL bytes")
    return Path(text)
