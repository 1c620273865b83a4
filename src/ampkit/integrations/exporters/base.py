"""What every exporter shares: one :class:`Row` per ampkit mode, one :class:`Export` per answer.

An exporter is a table (canonical mode -> :class:`Row`) plus two small methods that turn a
row's framework value into that framework's config and Python lines. Rows are data, so the
docs table, the tests and the CLI all read the same answers.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

Equivalence = Literal["exact", "approximate", "none"]
"""``exact``: the setting (plus its extra lines) does what the ampkit mode does.
``approximate``: the closest setting; the notes say how it differs. ``none``: no setting exists."""

#: Global flags for true fp32. ampkit's ``fp32`` turns TF32 off everywhere; PyTorch's own default
#: leaves ``cudnn.allow_tf32 = True``, so convolutions on Ampere+ would silently run in TF32.
TF32_OFF: tuple[str, ...] = (
    'torch.set_float32_matmul_precision("highest")  # no TF32 in matmuls',
    "torch.backends.cudnn.allow_tf32 = False  # PyTorch's default is True for convolutions",
)
#: Global flags for ``tf32``: ``"high"`` is what ``torch.backends.cuda.matmul.allow_tf32 = True`` sets.
TF32_ON: tuple[str, ...] = (
    'torch.set_float32_matmul_precision("high")  # TF32 matmuls (NVIDIA cc >= 8.0)',
    "torch.backends.cudnn.allow_tf32 = True  # TF32 convolutions",
)


@dataclass(frozen=True)
class Row:
    """What one framework says for one ampkit mode."""

    equivalence: Equivalence
    """How close the framework's setting comes to the ampkit mode."""
    value: Any = None
    """The framework's own value (``"bf16"``, ``"bf16-mixed"``, a config dict); ``None`` if none."""
    extra_code: tuple[str, ...] = ()
    """Python lines to run next to the setting (global flags the framework does not set)."""
    notes: tuple[str, ...] = ()
    """Caveats and workarounds, one sentence each."""


@dataclass(frozen=True)
class Export:
    """One framework's equivalent of one ampkit precision, ready to print."""

    framework: str
    """Exporter name, e.g. ``"accelerate"``."""
    precision: str
    """Canonical ampkit mode."""
    equivalence: Equivalence
    """See :data:`Equivalence`."""
    config: dict[str, Any] | None
    """The framework's config payload (file content or fragment); ``None`` when there is no equivalent."""
    config_kind: str
    """What :attr:`config` is and where it goes, for the text output."""
    code: str
    """Python that applies the setting; empty when there is no equivalent."""
    notes: tuple[str, ...] = field(default_factory=tuple)
    """Caveats, workarounds, and the plain statement when there is no equivalent."""

    def to_dict(self) -> dict[str, Any]:
        """Plain data for ``--format json|yaml``."""
        return {
            "framework": self.framework,
            "precision": self.precision,
            "equivalence": self.equivalence,
            "config_kind": self.config_kind,
            "config": self.config,
            "code": self.code,
            "notes": list(self.notes),
        }


class Exporter(ABC):
    """One framework: its table of rows and how a row's value becomes config and code."""

    name: ClassVar[str]
    """Name used with ``--to``."""
    title: ClassVar[str]
    """Name as the framework spells it, for messages."""
    config_kind: ClassVar[str]
    """Description of :meth:`config`'s payload."""
    rows: ClassVar[Mapping[str, Row]]
    """Canonical mode -> row. Modes missing here export as ``none`` (see :meth:`row`)."""

    @abstractmethod
    def config(self, value: Any) -> dict[str, Any]:
        """The config payload for a row's value."""

    @abstractmethod
    def code(self, value: Any) -> list[str]:
        """Python lines (imports included) that apply a row's value."""

    def row(self, mode: str) -> Row:
        """The row for ``mode``; a ``none`` row naming the gap for a mode added after this table."""
        if mode in self.rows:
            return self.rows[mode]
        return Row("none", notes=(f"ampkit has no {self.title} mapping for {mode} yet.",))

    def export(self, mode: str) -> Export:
        """The full answer for one canonical mode."""
        row = self.row(mode)
        if row.equivalence == "none":
            plain = f"{self.title} has no equivalent of ampkit's {mode}."
            return Export(self.name, mode, "none", None, self.config_kind, "", (plain, *row.notes))
        lines = self.code(row.value)
        if row.extra_code:
            lines = ["import torch", *lines, *row.extra_code]
        return Export(
            self.name,
            mode,
            row.equivalence,
            self.config(row.value),
            self.config_kind,
            "\n".join(lines),
            row.notes,
        )
