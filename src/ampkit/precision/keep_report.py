"""Which ``keep_fp32`` entries select nothing in what ``prepare`` was given.

A typo (``"LayerNrom"``), a parameter name where a module is meant (``"logit_scale"``) or a regex
that matches no module name keeps nothing in fp32, and the run would go on believing it did
(``describe`` prints the selection as given). :func:`unmatched` names those entries, so that
``prepare`` can say so once, with what the model has instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from .keep_fp32 import ModuleFilter


def _entries(keep: ModuleFilter) -> list[tuple[str, ModuleFilter]]:
    """Each entry as it was written, with a filter holding only that entry."""
    return [(t, ModuleFilter((t,), ())) for t in keep.type_names] + [
        (f"re:{p}", ModuleFilter((), (p,))) for p in keep.name_patterns
    ]


def _module_hit(one: ModuleFilter, model: nn.Module) -> bool:
    return any(one.matches(name, module) for name, module in model.named_modules())


def unmatched(keep: ModuleFilter, obj: Any) -> list[str]:
    """Entries of ``keep`` that select nothing in ``obj`` (a module, a mapping name -> tensor/module,
    or bare tensors, where no entry can apply: they carry no names and no module types)."""
    out = []
    for text, one in _entries(keep):
        if isinstance(obj, nn.Module):
            hit = _module_hit(one, obj)
        elif isinstance(obj, Mapping):
            hit = any(
                (isinstance(v, torch.Tensor) and one.matches_key(str(k)))
                or (isinstance(v, nn.Module) and _module_hit(one, v))
                for k, v in obj.items()
            )
        else:
            hit = False
        if not hit:
            out.append(text)
    return out


def _examples(obj: Any) -> str:
    """A few module types and names (or keys) of ``obj``, for the message."""
    if isinstance(obj, nn.Module):
        types = sorted({type(m).__name__ for m in obj.modules()})
        names = [n for n, _ in obj.named_modules() if n][:4]
        return f"its module types: {', '.join(types[:8])}; names like {', '.join(names) or '(none)'}"
    if isinstance(obj, Mapping):
        keys = [str(k) for k, v in obj.items() if isinstance(v, torch.Tensor | nn.Module)]
        return f"its keys: {', '.join(keys[:8])}"
    return "bare tensors carry no names or module types: pass the module, or a mapping name -> tensor"


def unmatched_message(mode: str, keep: ModuleFilter, obj: Any) -> str | None:
    """One line naming the entries that keep nothing in fp32, or None when every entry selects something."""
    missing = unmatched(keep, obj)
    if not missing:
        return None
    listed = ", ".join(repr(m) for m in missing)
    verb, keeps = ("select", "they keep") if len(missing) > 1 else ("selects", "it keeps")
    return (
        f"{mode}: keep_fp32 {listed} {verb} nothing in the {type(obj).__name__}, so {keeps} nothing in "
        f"fp32; {_examples(obj)} (a module type is its class name; re:<regex> searches module names, "
        "or the keys of a mapping)"
    )
