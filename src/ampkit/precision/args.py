"""``add_precision_args``: every precision flag spelling on a user's own argparse parser.

Adds ``--precision``, the seeds' ``--mixed_precision`` / ``--amp_dtype`` / ``--amp`` and
``--keep-fp32`` and ``--fp8-emulate``, each in dash and underscore form. Old per-module flags
(``--gt_dca_mixed_precision``, ``--gt_dca_amp_dtype``) are rewritten by
:func:`rewrite_legacy_flags` with a deprecation warning naming the new flag.
"""

from __future__ import annotations

import argparse
import re
import warnings
from collections.abc import Iterable, Sequence

from .aliases import valid_spellings

_LEGACY = re.compile(
    r"^--(?P<name>[A-Za-z0-9]+(?:[_-][A-Za-z0-9]+)*?)[_-](?P<what>mixed[_-]precision|amp[_-]dtype)(?P<rest>=.*)?$"
)
_CURRENT = {"mixed-precision", "mixed_precision", "amp-dtype", "amp_dtype"}


def both_spellings(name: str) -> list[str]:
    """``"amp-dtype"`` -> ``["--amp-dtype", "--amp_dtype"]`` (one entry when they coincide)."""
    dash, under = "--" + name.replace("_", "-"), "--" + name.replace("-", "_")
    return [dash] if dash == under else [dash, under]


def add_precision_args(
    parser: argparse.ArgumentParser, *, group_title: str = "precision"
) -> argparse.ArgumentParser:
    """Add every precision flag spelling to ``parser``; read the result with ``Precision.from_args``."""
    group = parser.add_argument_group(group_title)
    group.add_argument(
        *both_spellings("precision"),
        dest="precision",
        default=None,
        metavar="MODE",
        help=f"precision mode: {valid_spellings()}. Default fp32, or USE_AMP/AMP_DTYPE from the environment.",
    )
    group.add_argument(
        *both_spellings("mixed-precision"),
        dest="mixed_precision",
        action="store_true",
        help="mixed precision for the whole pipeline; dtype from --amp_dtype (default fp16).",
    )
    group.add_argument(
        *both_spellings("amp-dtype"),
        dest="amp_dtype",
        default=None,
        metavar="{fp16,bf16}",
        help="autocast dtype for --mixed_precision / --amp.",
    )
    group.add_argument(
        "--amp",
        dest="amp",
        action="store_true",
        help="mixed precision: bf16 where the hardware has it, else fp16.",
    )
    group.add_argument(
        *both_spellings("keep-fp32"),
        dest="keep_fp32",
        default=None,
        metavar="SPEC",
        help="modules kept in fp32, by type or name regex: 'LayerNorm,re:^head\\.'.",
    )
    group.add_argument(
        *both_spellings("fp8-emulate"),
        dest="fp8_emulate",
        action="store_true",
        help="fp8-mixed without fp8 hardware: fp8 casts and scales, fp32 matmuls (same numerics, slow).",
    )
    return parser


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
        warnings.warn(
            f"{arg.split('=')[0]} is deprecated: precision is global now, use {new}",
            DeprecationWarning,
            stacklevel=2,
        )
        out.append(new + (match["rest"] or ""))
    return out
