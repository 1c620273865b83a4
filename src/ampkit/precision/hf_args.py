"""``HfArgumentParser`` after ``add_precision_args``: the flags reach the dataclasses it returns.

HF's ``parse_args_into_dataclasses`` hands each dataclass only its own fields and puts every other
parsed flag (``--precision``, ``--keep-fp32``...) in one extra namespace at the end of its result,
so ``Precision.from_args(training_args)`` would never see a typed ``--precision bf16-true``.
:func:`pass_to_dataclasses` wraps that method on the parser instance: after HF has built its
objects, every precision flag is set on each returned dataclass that lacks it (``training_args``
gets ``.precision``, ``.keep_fp32``, ...; HF's own ``.fp16`` / ``.bf16`` / ``.tf32`` fields stay
HF's), and the extra namespace gets HF's fields, so ``from_args`` reads the whole command line
from any of them.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
from typing import Any

#: Marks a ``parse_args_into_dataclasses`` that already passes the flags on.
_WRAPPED = "_ampkit_passes_precision"


def pass_to_dataclasses(parser: argparse.ArgumentParser, owners_attr: str) -> None:
    """Wrap ``parser.parse_args_into_dataclasses`` (an ``HfArgumentParser``; others are left alone);
    ``owners_attr`` is the namespace attribute that carries ``FlagOwners`` (copied along)."""
    original = getattr(parser, "parse_args_into_dataclasses", None)
    if original is None or getattr(original, _WRAPPED, False):
        return

    @functools.wraps(original)
    def parse_args_into_dataclasses(*args: Any, **kwargs: Any) -> Any:
        outputs = original(*args, **kwargs)
        share_flags(parser, outputs, owners_attr)
        return outputs

    setattr(parse_args_into_dataclasses, _WRAPPED, True)
    parser.parse_args_into_dataclasses = parse_args_into_dataclasses  # type: ignore[attr-defined]


def share_flags(parser: argparse.ArgumentParser, outputs: Any, owners_attr: str) -> None:
    """Copy the precision flags between HF's extra namespace and the dataclass objects in ``outputs``."""
    owners = getattr(parser, "ampkit_precision_flags", None)
    if owners is None or not isinstance(outputs, tuple):
        return
    objects = [o for o in outputs if dataclasses.is_dataclass(o) and not isinstance(o, type)]
    rest = next((o for o in outputs if isinstance(o, argparse.Namespace)), None)
    if rest is None:
        return
    names = [dest for _, dest in owners.dests] + [owners_attr]
    for obj in objects:  # HF's fields into the namespace: from_args(rest) sees --bf16 True too
        for dest in names:
            if hasattr(obj, dest) and not hasattr(rest, dest):
                setattr(rest, dest, getattr(obj, dest))
    for obj in objects:  # ampkit's flags onto each object: from_args(training_args)
        for dest in names:
            if hasattr(rest, dest) and not hasattr(obj, dest):
                with contextlib.suppress(AttributeError, TypeError):  # a slots class: read `rest`
                    object.__setattr__(obj, dest, getattr(rest, dest))  # frozen dataclasses too
