"""``add_precision_args``: every precision flag spelling on a user's own argparse parser.

Adds ``--precision``, the seeds' ``--mixed_precision`` / ``--amp_dtype`` / ``--amp`` and
``--keep-fp32`` and ``--fp8-emulate``, each in dash and underscore form — but only the flags the
parser does not define already: a training script's own ``--mixed_precision`` / ``--amp_dtype``
stay as the script wrote them, and :class:`FlagOwners` (stored on the parser and as a default on
the parsed namespace) tells ``Precision.from_args`` which flags are whose, so the script's flags
are read the way the script meant them. Old per-module flags (``--gt_dca_mixed_precision``,
``--gt_dca_amp_dtype``) are rewritten by :func:`rewrite_legacy_flags` with a deprecation warning
naming the new flag.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..warn import warn
from .aliases import valid_spellings

_LEGACY = re.compile(
    r"^--(?P<name>[A-Za-z0-9]+(?:[_-][A-Za-z0-9]+)*?)[_-](?P<what>mixed[_-]precision|amp[_-]dtype)(?P<rest>=.*)?$"
)
_CURRENT = {"mixed-precision", "mixed_precision", "amp-dtype", "amp_dtype"}

#: The namespace attribute (a parser default) that carries :class:`FlagOwners` to ``from_args``.
OWNERS_ATTR = "_ampkit_precision_flags"

#: Each precision flag: (name, argparse keywords when ampkit adds it).
_FLAGS: tuple[tuple[str, dict[str, Any]], ...] = (
    (
        "precision",
        dict(
            default=None,
            metavar="MODE",
            help=f"precision mode: {valid_spellings()}. Default fp32, or AMPKIT_PRECISION / USE_AMP+AMP_DTYPE from the environment.",
        ),
    ),
    (
        "mixed_precision",
        dict(
            action="store_true",
            help="mixed precision for the whole pipeline; dtype from --amp_dtype (default fp16).",
        ),
    ),
    (
        "amp_dtype",
        dict(default=None, metavar="{fp16,bf16}", help="autocast dtype for --mixed_precision / --amp."),
    ),
    (
        "amp",
        dict(
            action="store_true",
            help="mixed precision: bf16 on a CPU (autocast's CPU dtype) and on GPUs that have it, else fp16.",
        ),
    ),
    (
        "keep_fp32",
        dict(
            default=None,
            metavar="SPEC",
            help="modules kept in fp32, by type or name regex: 'LayerNorm,re:^head\\.'.",
        ),
    ),
    (
        "fp8_emulate",
        dict(
            action="store_true",
            help="fp8-mixed without fp8 hardware: fp8 casts and scales, fp32 matmuls (same numerics, slow).",
        ),
    ),
)


@dataclass(frozen=True)
class FlagOwners:
    """Which precision flags ampkit added to a parser and which the script already had."""

    added: frozenset[str] = frozenset()
    """Names (``"amp_dtype"``, ...) of the flags :func:`add_precision_args` defined."""
    dests: tuple[tuple[str, str], ...] = ()
    """``(name, namespace attribute)`` of every precision flag; the script's own dest where it has one."""
    script_defaults: tuple[tuple[str, Any], ...] = field(default=())
    """``(name, default)`` of the flags the script defined itself."""

    def dest(self, name: str) -> str:
        """The namespace attribute that holds flag ``name``."""
        return dict(self.dests).get(name, name)

    def owned_by_script(self, name: str) -> bool:
        """True when the script itself defined flag ``name``."""
        return name not in self.added

    def script_default(self, name: str) -> Any:
        """The default the script gave its own flag ``name`` (None when ampkit added it)."""
        return dict(self.script_defaults).get(name)


def both_spellings(name: str) -> list[str]:
    """``"amp-dtype"`` -> ``["--amp-dtype", "--amp_dtype"]`` (one entry when they coincide)."""
    dash, under = "--" + name.replace("_", "-"), "--" + name.replace("-", "_")
    return [dash] if dash == under else [dash, under]


def _existing(parser: argparse.ArgumentParser, name: str) -> argparse.Action | None:
    """The parser's own action for any spelling of ``--name``, if it has one."""
    actions: dict[str, argparse.Action] = parser._option_string_actions
    return next((actions[s] for s in both_spellings(name) if s in actions), None)


def add_precision_args(
    parser: argparse.ArgumentParser, *, group_title: str = "precision"
) -> argparse.ArgumentParser:
    """Add the precision flags ``parser`` does not have yet; read the result with ``Precision.from_args``.

    A flag the parser already defines in any spelling (a training script's own
    ``--mixed_precision`` or ``--amp_dtype {fp16,bf16}`` with default fp16) is left alone;
    ``Precision.from_args`` then reads it as such scripts do: the dtype counts only once the
    switch is on. Calling this twice on one parser adds nothing the second time.
    """
    before: FlagOwners | None = getattr(parser, "ampkit_precision_flags", None)
    added = set(before.added) if before else set()
    dests, script_defaults = [], []
    group: Any = None
    for name, kwargs in _FLAGS:
        action = _existing(parser, name)
        if action is None:
            if group is None:
                group = parser.add_argument_group(group_title)
            group.add_argument(*both_spellings(name), dest=name, **kwargs)
            added.add(name)
            dests.append((name, name))
        else:
            dests.append((name, action.dest))
            if name not in added:
                script_defaults.append((name, action.default))
    owners = FlagOwners(frozenset(added), tuple(dests), tuple(script_defaults))
    parser.ampkit_precision_flags = owners  # type: ignore[attr-defined]
    parser.set_defaults(**{OWNERS_ATTR: owners})
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
        warn(f"{arg.split('=')[0]} is deprecated: precision is global now, use {new}", DeprecationWarning)
        out.append(new + (match["rest"] or ""))
    return out
