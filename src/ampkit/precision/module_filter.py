"""``ModuleFilter``: the one override syntax that names modules to keep in float32.

Items are class names (``"LayerNorm"``, ``"torch.nn.LayerNorm"``) or qualified-name regexes
(``"re:^head\\."``), comma-separated or as a list; true-half conversion, fp32 islands, FSDP2
policies, fp8 and int8-qat filters all read it. For tensors held in a mapping
(``vars(gaussians)``) the same items select keys.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from torch import nn

from .aliases import PrecisionError


@dataclass(frozen=True)
class ModuleFilter:
    """Selects modules by class name (``"LayerNorm"``, ``"torch.nn.LayerNorm"``) or name regex (``"re:..."``)."""

    type_names: tuple[str, ...] = ()
    name_patterns: tuple[str, ...] = ()

    @classmethod
    def parse(cls, spec: str | Iterable[str] | None) -> ModuleFilter:
        """Parse ``"LayerNorm,re:^head\\."`` or a list of such items. Raises PrecisionError on a bad regex."""
        if spec is None:
            return cls()
        items = spec.split(",") if isinstance(spec, str) else list(spec)
        types, patterns = [], []
        for raw in items:
            item = raw.strip()
            if not item:
                continue
            if item.startswith("re:"):
                try:
                    re.compile(item[3:])
                except re.error as err:
                    raise PrecisionError(f"bad keep-fp32 regex {item!r}: {err}") from None
                patterns.append(item[3:])
            else:
                types.append(item)
        return cls(tuple(types), tuple(patterns))

    def __bool__(self) -> bool:
        return bool(self.type_names or self.name_patterns)

    def matches(self, name: str, module: nn.Module) -> bool:
        """True when ``module`` (at qualified ``name``) is selected."""
        cls = type(module)
        for wanted in self.type_names:
            if wanted in (cls.__name__, f"{cls.__module__}.{cls.__qualname__}"):
                return True
            if wanted.startswith("torch.nn.") and cls.__name__ == wanted.rsplit(".", 1)[-1]:
                return True
        return any(re.search(p, name) for p in self.name_patterns)

    def matches_key(self, key: str) -> bool:
        """For tensors held in a mapping (``vars(gaussians)``): a regex item searches the key, a plain
        item equals it (``"_xyz,re:^_scal"``)."""
        return key in self.type_names or any(re.search(p, key) for p in self.name_patterns)

    def select(self, model: nn.Module) -> Iterator[tuple[str, nn.Module]]:
        """Selected submodules, outermost first; children of a selected module are not repeated."""
        taken: list[str] = []
        for name, module in model.named_modules():
            if any(name.startswith(prefix + ".") for prefix in taken):
                continue
            if self.matches(name, module):
                taken.append(name)
                yield name, module

    def spec(self) -> str:
        """Back to the comma-separated syntax (for logs and checkpoints)."""
        return ",".join([*self.type_names, *(f"re:{p}" for p in self.name_patterns)])
