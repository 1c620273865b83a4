"""An argparse parser whose errors are one line and whose flags accept dash and underscore forms."""

from __future__ import annotations

import argparse
import sys
from typing import Any, NoReturn

from ..precision.args import both_spellings


class AmpkitParser(argparse.ArgumentParser):
    """``ArgumentParser`` that reports a bad command line as one line on stderr, exit code 2."""

    def __init__(self, *args: Any, **kwargs: Any):
        kwargs.setdefault("formatter_class", argparse.ArgumentDefaultsHelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: error: {message} (see {self.prog} --help)", file=sys.stderr)
        sys.exit(2)


def add_flag(parser: argparse.ArgumentParser | Any, name: str, **kwargs: Any) -> None:
    """``add_argument`` under both ``--dash-name`` and ``--under_name``."""
    kwargs.setdefault("dest", name.replace("-", "_"))
    parser.add_argument(*both_spellings(name), **kwargs)
