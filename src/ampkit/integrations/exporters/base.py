"""What every exporter shares: one :class:`Row` per ampkit mode, one :class:`Export` per answer.

An exporter is a table (canonical mode -> :class:`Row`) plus two small methods that turn a
row's framework value into that framework's config and Python lines. Rows are data, so the
docs table, the tests and the CLI all read the same answers. A row can differ on a CPU
(``Row.cpu``): Accelerate accepts ``"fp16"`` there but trains in fp32, so the label is per device.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar, Literal

from ...precision import MODES

Equivalence = Literal["exact", "approximate", "none"]
"""``exact``: the setting (plus its extra lines) does what the ampkit mode does on that device.
``approximate``: the closest setting; the notes say how it differs. ``none``: no setting exists."""

#: Device types an export is labelled for (``--device``); ``cuda`` stands for any NVIDIA GPU.
DEVICES: tuple[str, ...] = ("cuda", "cpu")

#: Global flags for true fp32. ampkit turns TF32 off in every mode but ``tf32``; PyTorch's own
#: default leaves ``cudnn.allow_tf32 = True``, so convolutions on Ampere+ would silently run in TF32.
TF32_OFF: tuple[str, ...] = (
    'torch.set_float32_matmul_precision("highest")  # no TF32 in matmuls',
    "torch.backends.cudnn.allow_tf32 = False  # PyTorch's default is True for convolutions",
)
#: Global flags for ``tf32``: ``"high"`` is what ``torch.backends.cuda.matmul.allow_tf32 = True`` sets.
TF32_ON: tuple[str, ...] = (
    'torch.set_float32_matmul_precision("high")  # TF32 matmuls (NVIDIA cc >= 8.0)',
    "torch.backends.cudnn.allow_tf32 = True  # TF32 convolutions",
)
#: The launch environment that does the same without touching the script. NVIDIA's cuBLAS and
#: cuDNN read ``NVIDIA_TF32_OVERRIDE=0`` and then never use TF32, whatever the framework set;
#: PyTorch reads ``TORCH_ALLOW_TF32_CUBLAS_OVERRIDE=1`` as TF32 matmuls on (cuDNN's is on by default).
TF32_ENV_OFF: dict[str, str] = {"NVIDIA_TF32_OVERRIDE": "0"}
TF32_ENV_ON: dict[str, str] = {"TORCH_ALLOW_TF32_CUBLAS_OVERRIDE": "1"}


@dataclass(frozen=True)
class Tf32:
    """How an export carries ampkit's TF32 setting (off in every mode but ``tf32``)."""

    enabled: bool
    """Whether the ampkit mode runs with TF32 on."""
    field: str | None
    """The key in the framework's config that carries it; ``None`` when the framework has none."""
    python: tuple[str, ...]
    """``torch`` lines that set the flags in a script."""
    env: Mapping[str, str]
    """Launch environment that sets it from outside the script."""

    def env_line(self) -> str:
        """``NAME=VALUE`` words for a shell command line."""
        return " ".join(f"{key}={value}" for key, value in self.env.items())

    def note(self, title: str) -> str:
        """The sentence printed (on stderr with ``--config-only``) when the config cannot carry it."""
        state = "on" if self.enabled else "off"
        lines = "; ".join(line.split("  #")[0] for line in self.python)
        return (
            f"{title}'s config has no TF32 field and ampkit runs this mode with TF32 {state}: launch "
            f"with {self.env_line()} in the environment, or put in your script: import torch; {lines}"
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain data for ``--format json|yaml``."""
        return {
            "enabled": self.enabled,
            "field": self.field,
            "python": [line.split("  #")[0] for line in self.python],
            "env": dict(self.env),
        }


@dataclass(frozen=True)
class Row:
    """What one framework says for one ampkit mode."""

    equivalence: Equivalence
    """How close the framework's setting comes to the ampkit mode (on a GPU; see :attr:`cpu`)."""
    value: Any = None
    """The framework's own value (``"bf16"``, ``"bf16-mixed"``, a config dict); ``None`` if none."""
    extra_code: tuple[str, ...] = ()
    """Python lines to run next to the setting (beyond the TF32 flags, which every export gets)."""
    notes: tuple[str, ...] = ()
    """Caveats and workarounds, one sentence each."""
    cpu: Row | None = None
    """The row on a CPU, where the framework does something else; ``None``: the same as on a GPU."""

    def on(self, device: str) -> Row:
        """This row as it holds on ``device`` (a type from :data:`DEVICES`)."""
        return self.cpu if device == "cpu" and self.cpu is not None else self


def on_cpu(row: Row, equivalence: Equivalence, note: str) -> Row:
    """``row`` with a CPU label that differs; ``note`` says what the framework does there."""
    if equivalence == "none":
        return replace(row, cpu=Row("none", notes=(note,)))
    return replace(row, cpu=replace(row, equivalence=equivalence, notes=(*row.notes, note)))


@dataclass(frozen=True)
class Export:
    """One framework's equivalent of one ampkit precision on one device type, ready to print."""

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
    device: str = "cuda"
    """The device type the label holds for."""
    tf32: Tf32 | None = None
    """How TF32 is carried; ``None`` when there is no equivalent."""
    title: str = ""
    """The framework's name as it spells it."""

    def config_notes(self) -> tuple[str, ...]:
        """What ``--config-only`` prints on stderr: the notes, and TF32 when the config lacks it."""
        if self.tf32 is None or self.tf32.field is not None:
            return self.notes
        return (*self.notes, self.tf32.note(self.title or self.framework))

    def to_dict(self) -> dict[str, Any]:
        """Plain data for ``--format json|yaml``."""
        return {
            "framework": self.framework,
            "precision": self.precision,
            "device": self.device,
            "equivalence": self.equivalence,
            "config_kind": self.config_kind,
            "config": self.config,
            "code": self.code,
            "tf32": self.tf32.to_dict() if self.tf32 else None,
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
    tf32_field: ClassVar[str | None] = None
    """The config key that carries TF32 (Hugging Face's ``tf32``); ``None``: the framework has none,
    so the TF32 lines go into the Python and, with ``--config-only``, a note on stderr."""

    @abstractmethod
    def config(self, value: Any, device: str) -> dict[str, Any]:
        """The config payload for a row's value on ``device``."""

    @abstractmethod
    def code(self, value: Any, config: dict[str, Any], device: str) -> list[str]:
        """Python lines (imports included) that apply a row's value (``config``: the final payload)."""

    def set_tf32(self, config: dict[str, Any], tf32: Tf32, device: str) -> None:
        """Write TF32 into ``config`` (only exporters with a :attr:`tf32_field` have anything to do)."""
        if tf32.field is not None:
            config[tf32.field] = tf32.enabled

    def row(self, mode: str, device: str = "cuda") -> Row:
        """The row for ``mode`` on ``device``; a ``none`` row naming the gap for a mode added later."""
        if mode in self.rows:
            return self.rows[mode].on(device)
        return Row("none", notes=(f"ampkit has no {self.title} mapping for {mode} yet.",))

    def has(self, device: str) -> list[str]:
        """The modes this framework has an equivalent for on ``device``, in table order."""
        return [mode for mode in self.rows if self.row(mode, device).equivalence != "none"]

    def export(self, mode: str, device: str = "cuda") -> Export:
        """The full answer for one canonical mode on one device type."""
        row = self.row(mode, device)
        if row.equivalence == "none":
            plain = f"{self.title} has no equivalent of ampkit's {mode}"
            plain += " on a CPU." if device == "cpu" and mode in self.has("cuda") else "."
            return Export(
                self.name,
                mode,
                "none",
                None,
                self.config_kind,
                "",
                (plain, *row.notes),
                device,
                None,
                self.title,
            )
        on = MODES[mode].tf32 if mode in MODES else False
        tf32 = Tf32(
            on, self.tf32_field, TF32_ON if on else TF32_OFF, dict(TF32_ENV_ON if on else TF32_ENV_OFF)
        )
        config = self.config(row.value, device)
        self.set_tf32(config, tf32, device)
        lines = self.code(row.value, config, device)
        if tf32.field is None:  # the config cannot say it: the script must
            state = "on" if on else "off"
            lines = [
                "import torch",
                *lines,
                f"# TF32 {state}, as ampkit runs {mode}: in the training script",
                *tf32.python,
            ]
        lines += row.extra_code
        return Export(
            self.name,
            mode,
            row.equivalence,
            config,
            self.config_kind,
            "\n".join(lines),
            row.notes,
            device,
            tf32,
            self.title,
        )
