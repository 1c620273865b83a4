"""One module per framework, each a table of what that framework says for every ampkit mode."""

from .accelerate import AccelerateExporter
from .base import TF32_OFF, TF32_ON, Equivalence, Export, Exporter, Row
from .deepspeed import DeepSpeedExporter
from .lightning import LightningExporter
from .mmengine import MMEngineExporter

#: Exporter classes by ``--to`` name, in the order help and errors list them.
EXPORTERS: dict[str, type[Exporter]] = {
    cls.name: cls for cls in (AccelerateExporter, LightningExporter, MMEngineExporter, DeepSpeedExporter)
}

__all__ = [
    "EXPORTERS",
    "TF32_OFF",
    "TF32_ON",
    "AccelerateExporter",
    "DeepSpeedExporter",
    "Equivalence",
    "Export",
    "Exporter",
    "LightningExporter",
    "MMEngineExporter",
    "Row",
]
