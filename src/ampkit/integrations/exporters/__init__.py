"""One module per framework, each a table of what that framework says for every ampkit mode."""

from .accelerate import AccelerateExporter
from .base import DEVICES, TF32_OFF, TF32_ON, Equivalence, Export, Exporter, Row, Tf32
from .deepspeed import DeepSpeedExporter
from .keras import KerasExporter
from .lightning import LightningExporter
from .mmengine import MMEngineExporter
from .transformers import TransformersExporter

#: Exporter classes by ``--to`` name, in the order help and errors list them.
EXPORTERS: dict[str, type[Exporter]] = {
    cls.name: cls
    for cls in (
        AccelerateExporter,
        LightningExporter,
        MMEngineExporter,
        DeepSpeedExporter,
        TransformersExporter,
        KerasExporter,
    )
}

__all__ = [
    "DEVICES",
    "EXPORTERS",
    "TF32_OFF",
    "TF32_ON",
    "AccelerateExporter",
    "DeepSpeedExporter",
    "Equivalence",
    "Export",
    "Exporter",
    "KerasExporter",
    "LightningExporter",
    "MMEngineExporter",
    "Row",
    "Tf32",
    "TransformersExporter",
]
