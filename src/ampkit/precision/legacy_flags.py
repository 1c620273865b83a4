"""The old per-module precision flags (``--gt_dca_mixed_precision``, ``--gt_dca_amp_dtype``).

Precision is global now. :func:`~ampkit.precision.args.add_precision_args` puts
:class:`LegacyFlag` actions for the README's ``--gt_dca_*`` spellings on a script's parser,
hidden from ``--help``: each does what the global flag does, with a ``DeprecationWarning``
naming the new flag at the line of the script that parsed its argv. :func:`rewrite_legacy_flags`
rewrites any ``--<name>_mixed_precision`` / ``--<name>_amp_dtype`` in an argv before parsing
(``ampkit``'s own CLI uses it).
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterable, Sequence
from typing import Any

from ..warn import warn

_LEGACY = re.compile(
    r"^--(?P<name>[A-Za-z0-9]+(?:[_-][A-Za-z0-9]+)*?)[_-](?P<what>mixed[_-]precision|amp[_-]dtype)(?P<rest>=.*)?$"
)
_CURRENT = {"mixed-precision", "mixed_precision", "amp-dtype", "amp_dtype"}

#: The old flags a parser accepts after ``add_precision_args``: (legacy name, the flag it means).
LEGACY_FLAGS = (("gt_dca_mixed_precision", "mixed_precision"), ("gt_dca_amp_dtype", "amp_dtype"))


def _deprecated(old: str, new: str) -> str:
    return f"{old} is deprecated: precision is global now, use {new}"


class LegacyFlag(argparse.Action):
    """An old flag that runs ``target`` (the parser's action for the global flag), warning once per use.

    A legacy ``--*_mixed_precision`` is a switch; a legacy ``--*_amp_dtype`` takes the value the
    target takes (its ``type`` and ``choices`` apply).
    """

    def __init__(self, option_strings: Sequence[str], dest: str, *, target: argparse.Action, **kwargs: Any):
        self.target = target
        switch = "mixed" in option_strings[0]
        super().__init__(
            option_strings,
            argparse.SUPPRESS,
            nargs=0 if switch else None,
            default=argparse.SUPPRESS,
            **kwargs,
        )

    def __call__(self, parser: Any, namespace: Any, values: Any, option_string: Any = None) -> None:
        target = self.target
        new = next((s for s in target.option_strings if "_" in s), target.option_strings[0])
        # argparse's frames sit between this action and the script: skip them too
        warn(_deprecated(str(option_string), new), DeprecationWarning, skip_files=(argparse.__file__,))
        if self.nargs == 0 and target.nargs != 0:  # a script's --mixed_precision that takes a value
            setattr(namespace, target.dest, True)
            return
        converted = [] if target.nargs == 0 else parser._get_values(target, [values])
        target(parser, namespace, converted, new)


def rewrite_legacy_flags(argv: Sequence[str], *, known: Iterable[str] = ()) -> list[str]:
    """Rewrite ``--<name>_mixed_precision`` / ``--<name>_amp_dtype`` to the global flags, warning once each.

    ``known`` lists option strings the parser already defines, which are never rewritten.
    """
    keep = set(known)
    out: list[str] = []
    for arg in argv:
        match = _LEGACY.match(arg)
        if arg in keep or not match or match["name"].replace("_", "-") in ("", "no") or arg[2:] in _CURRENT:
            out.append(arg)
            continue
        new = "--mixed_precision" if match["what"].replace("-", "_") == "mixed_precision" else "--amp_dtype"
        warn(_deprecated(arg.split("=")[0], new), DeprecationWarning)
        out.append(new + (match["rest"] or ""))
    return out
