"""``add_precision_args``: every precision flag spelling on a user's own argparse parser.

Adds ``--precision``, the seeds' ``--mixed_precision`` / ``--amp_dtype`` / ``--amp`` and
``--keep-fp32`` and ``--fp8-emulate``, each in dash and underscore form — but only the flags the
parser does not define already: a training script's own ``--mixed_precision`` / ``--amp_dtype``
stay as the script wrote them, and :class:`FlagOwners` (stored on the parser and as a default on
the parsed namespace) tells ``Precision.from_args`` which flags are whose, so the script's flags
are read the way the script meant them. The script's own flags are also made to note on the
namespace when they were given on the command line (ampkit's own flags too), so an explicit
``--amp-dtype float16`` is told from the same value as the script's default, and a flag left at
its default (Lightning's ``--precision 32-true``) never outranks ``USE_AMP`` or a study arm's
``AMPKIT_PRECISION``. HF-Trainer-style ``--fp16`` / ``--bf16`` / ``--tf32`` switches a script
defines are read too (never added); on an ``HfArgumentParser`` the parsed flags also reach the
dataclasses it returns (:mod:`.hf_args`). The old per-module flags
(``--gt_dca_mixed_precision``, ``--gt_dca_amp_dtype``) are accepted, hidden from ``--help``
(:mod:`.legacy_flags`, which also has :func:`rewrite_legacy_flags` for an argv).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field, replace
from typing import Any

from .aliases import valid_spellings
from .hf_args import pass_to_dataclasses
from .legacy_flags import LEGACY_FLAGS, LegacyFlag
from .legacy_flags import rewrite_legacy_flags as rewrite_legacy_flags

#: The namespace attribute (a parser default) that carries :class:`FlagOwners` to ``from_args``.
OWNERS_ATTR = "_ampkit_precision_flags"

#: Each precision flag: (name, argparse keywords when ampkit adds it).
_FLAGS: tuple[tuple[str, dict[str, Any]], ...] = (
    (
        "precision",
        dict(
            default=None,
            metavar="MODE",
            help=f"precision mode: {valid_spellings()}. Default fp32, or AMPKIT_PRECISION / USE_AMP+AMP_DTYPE / ACCELERATE_MIXED_PRECISION from the environment.",
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
        dict(
            default=None,
            metavar="{fp16,bf16}",
            help="autocast dtype for --mixed_precision / --amp (float16, half, bfloat16 also taken).",
        ),
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


#: A script's own precision switches that ampkit reads but never adds (HF Trainer's ``--fp16`` / ``--bf16`` / ``--tf32``).
_READ_ONLY = ("fp16", "bf16", "tf32")


@dataclass(frozen=True)
class FlagOwners:
    """Which precision flags ampkit added to a parser and which the script already had."""

    added: frozenset[str] = frozenset()
    """Names (``"amp_dtype"``, ...) of the flags :func:`add_precision_args` defined."""
    dests: tuple[tuple[str, str], ...] = ()
    """``(name, namespace attribute)`` of every precision flag; the script's own dest where it has one."""
    script_defaults: tuple[tuple[str, Any], ...] = field(default=())
    """``(name, default)`` of the flags the script defined itself."""
    tracked: frozenset[str] = frozenset()
    """Names of the flags (ampkit's and the script's) whose actions note on the namespace when given."""
    given: frozenset[str] = frozenset()
    """Names of tracked flags given on the command line this parse (set on the parsed namespace)."""

    def dest(self, name: str) -> str:
        """The namespace attribute that holds flag ``name``."""
        return dict(self.dests).get(name, name)

    def owned_by_script(self, name: str) -> bool:
        """True when the script itself defined flag ``name``."""
        return name not in self.added

    def script_default(self, name: str) -> Any:
        """The default the script gave its own flag ``name`` (None when ampkit added it)."""
        return dict(self.script_defaults).get(name)

    def given_explicitly(self, name: str, value: Any) -> bool:
        """Whether flag ``name`` (now holding ``value``) was typed rather than left at its default.

        Exact for the flags :func:`add_precision_args` tracks; for others (a namespace that never
        met it) a value other than the script's default counts as typed.
        """
        if name in self.tracked:
            return name in self.given
        return bool(value != self.script_default(name))


def both_spellings(name: str) -> list[str]:
    """``"amp-dtype"`` -> ``["--amp-dtype", "--amp_dtype"]`` (one entry when they coincide)."""
    dash, under = "--" + name.replace("_", "-"), "--" + name.replace("-", "_")
    return [dash] if dash == under else [dash, under]


def _existing(parser: argparse.ArgumentParser, name: str) -> argparse.Action | None:
    """The parser's own action for any spelling of ``--name``, if it has one."""
    actions: dict[str, argparse.Action] = parser._option_string_actions
    return next((actions[s] for s in both_spellings(name) if s in actions), None)


def _tracking_class(cls: type[argparse.Action]) -> type[argparse.Action]:
    """A subclass of ``cls`` whose ``__call__`` (argparse runs it only for a flag on the command
    line, never for a default) also adds the action's precision flag names to ``given``."""
    cached = _TRACKING.get(cls)
    if cached is not None:
        return cached

    def __call__(self: Any, parser: Any, namespace: Any, values: Any, option_string: Any = None) -> None:
        cls.__call__(self, parser, namespace, values, option_string)
        owners = getattr(namespace, OWNERS_ATTR, None)
        if isinstance(owners, FlagOwners):
            setattr(namespace, OWNERS_ATTR, replace(owners, given=owners.given | self._ampkit_names))

    sub = type(
        cls.__name__, (cls,), {"__call__": __call__, "_ampkit_tracking": True, "__module__": cls.__module__}
    )
    _TRACKING[cls] = sub
    return sub


_TRACKING: dict[type[argparse.Action], type[argparse.Action]] = {}


def _track(action: argparse.Action, name: str) -> bool:
    """Make the script's ``action`` note when it is given; False where its class cannot be swapped."""
    try:
        if not getattr(type(action), "_ampkit_tracking", False):
            action.__class__ = _tracking_class(type(action))
        action._ampkit_names = getattr(action, "_ampkit_names", frozenset()) | {name}  # type: ignore[attr-defined]
    except TypeError:
        return False
    return True


def add_precision_args(
    parser: argparse.ArgumentParser, *, group_title: str = "precision"
) -> argparse.ArgumentParser:
    """Add the precision flags ``parser`` does not have yet; read the result with ``Precision.from_args``.

    A flag the parser already defines in any spelling (a training script's own
    ``--mixed_precision`` or ``--amp_dtype {fp16,bf16}`` with default fp16) is left alone;
    ``Precision.from_args`` then reads it as such scripts do: the dtype counts only once the
    switch is on, and once it is, the script's default dtype only where no ``--amp_dtype`` was
    typed and the script's switch asks for it. Calling this twice on one parser adds nothing the
    second time.
    """
    before: FlagOwners | None = getattr(parser, "ampkit_precision_flags", None)
    added = set(before.added) if before else set()
    dests, script_defaults, tracked = [], [], set()
    group: Any = None
    for name, kwargs in _FLAGS:
        action = _existing(parser, name)
        if action is None:
            if group is None:
                group = parser.add_argument_group(group_title)
            action = group.add_argument(*both_spellings(name), dest=name, **kwargs)
            added.add(name)
            dests.append((name, name))
            if _track(action, name):
                tracked.add(name)
        else:
            dests.append((name, action.dest))
            if name not in added:
                script_defaults.append((name, action.default))
            if _track(action, name):
                tracked.add(name)
    for name in _READ_ONLY:
        action = _existing(parser, name)
        if action is not None:
            dests.append((name, action.dest))
            script_defaults.append((name, action.default))
            if _track(action, name):
                tracked.add(name)
    for legacy, name in LEGACY_FLAGS:
        target = _existing(parser, name)
        if target is not None and _existing(parser, legacy) is None:  # hidden from --help
            _track(  # typed: the flag it stands for counts as given
                parser.add_argument(
                    *both_spellings(legacy), action=LegacyFlag, target=target, help=argparse.SUPPRESS
                ),
                name,
            )
    owners = FlagOwners(frozenset(added), tuple(dests), tuple(script_defaults), frozenset(tracked))
    parser.ampkit_precision_flags = owners  # type: ignore[attr-defined]
    parser.set_defaults(**{OWNERS_ATTR: owners})
    pass_to_dataclasses(
        parser, OWNERS_ATTR
    )  # HfArgumentParser: from_args(training_args) sees --precision too
    return parser
